"""``python -m kt.cli``: the same as the ``kt`` console script."""

from kt.cli.main import main

if __name__ == "__main__":
    main()

"""Every recorded Kyoto Tycoon exchange (kt_binary.json, kt_rpc.json) through our codecs.

Client direction: requests are rebuilt from their decoded fields and compared byte for byte;
recorded responses are parsed and compared with their decoded form.  Server direction:
recorded requests are decoded by the server-side parsers, and recorded TSV answers are
re-encoded (encoding choice, record order, bytes) from their decoded pairs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kt.errors import ServerError
from kt.protocol import http, kt_binary, kt_rpc

VECTORS = Path(__file__).resolve().parents[1].parent / "shared" / "vectors"


def _load(name):
    path = VECTORS / name
    if not path.exists():
        pytest.skip(f"vectors not found: {path}")
    return json.loads(path.read_text())


def _b(value):
    """Decoded JSON byte string -> bytes."""
    if isinstance(value, dict):
        return bytes.fromhex(value["hex"])
    return value.encode("utf-8")


def _steps(data):
    for scenario in data["scenarios"]:
        for step in scenario["steps"]:
            yield scenario["name"], step


def _volatile(step, prefix):
    return {p[len(prefix):] for p in step.get("volatile_fields", []) if p.startswith(prefix)}


# --------------------------------------------------------------------------- binary


def _magic(request):
    return int(request["magic"].split()[0], 16) if "magic" in request else None


def _binary_client_request(req):
    """Rebuild a valid request with the client encoders; None if a client never sends it."""
    magic = _magic(req)
    if req.get("truncated") or "records" not in req and magic != kt_binary.MAGIC_REPLICATION:
        return None
    if any("ksiz" in r for r in req.get("records", [])):
        return None
    no_reply = req.get("flags") == 1
    if magic == kt_binary.MAGIC_SET_BULK:
        recs = [(r["dbidx"], _b(r["key"]), _b(r["value"]), r["xt"]) for r in req["records"]]
        if len(recs) == 1:
            assert kt_binary.encode_set_one(*recs[0], no_reply=no_reply) == kt_binary.encode_set_bulk(
                recs, no_reply
            )
        return kt_binary.encode_set_bulk(recs, no_reply)
    if magic == kt_binary.MAGIC_GET_BULK:
        if req["flags"] != 0:
            return None  # get_bulk flags are ignored; our client always sends 0
        recs = [(r["dbidx"], _b(r["key"])) for r in req["records"]]
        if len(recs) == 1:
            assert kt_binary.encode_get_one(*recs[0]) == kt_binary.encode_get_bulk(recs)
        return kt_binary.encode_get_bulk(recs)
    if magic == kt_binary.MAGIC_REMOVE_BULK:
        return kt_binary.encode_remove_bulk([(r["dbidx"], _b(r["key"])) for r in req["records"]], no_reply)
    if magic == kt_binary.MAGIC_PLAY_SCRIPT:
        recs = [(_b(r["key"]), _b(r["value"])) for r in req["records"]]
        return kt_binary.encode_play_script(_b(req["name"]), recs, no_reply)
    if magic == kt_binary.MAGIC_REPLICATION:
        return kt_binary.encode_replication(req["ts"], req["sid"], bool(req["flags"] & 1))
    return None


def _check_binary_server_parse(req, raw):
    magic = _magic(req)
    if not raw:
        return
    parsed = kt_binary.parse_request(raw)
    if magic is not None and magic not in (0xB1, 0xB4, 0xB8, 0xB9, 0xBA):
        request, end = parsed
        assert not request.known and end == 1
        return
    if req.get("truncated"):
        assert parsed is None  # the server keeps waiting for the rest
        request, _ = kt_binary.parse_request(raw, eof=True)
        assert request.failure == kt_binary.TRUNCATED and request.records == []
        return
    if any("ksiz" in r for r in req.get("records", [])):
        request, _ = parsed
        assert request.failure == kt_binary.OVERSIZED
        return
    request, end = parsed
    assert end == len(raw) and request.failure is None and request.known
    assert request.flags == req["flags"]
    # Every proper prefix asks for more bytes.
    for cut in range(len(raw)):
        assert kt_binary.parse_request(raw[:cut]) is None
    if magic == kt_binary.MAGIC_SET_BULK:
        want = [(r["dbidx"], _b(r["key"]), _b(r["value"]), r["xt"]) for r in req["records"]]
    elif magic in (kt_binary.MAGIC_GET_BULK, kt_binary.MAGIC_REMOVE_BULK):
        want = [(r["dbidx"], _b(r["key"])) for r in req["records"]]
    elif magic == kt_binary.MAGIC_PLAY_SCRIPT:
        want = [(_b(r["key"]), _b(r["value"])) for r in req["records"]]
        assert request.name == _b(req["name"])
    else:
        assert (request.ts, request.sid) == (req["ts"], req["sid"])
        want = []
    assert request.records == want
    assert request.no_reply == (req["flags"] == 1 and magic != kt_binary.MAGIC_GET_BULK)


_BINARY_PARSERS = {
    kt_binary.MAGIC_SET_BULK: kt_binary.parse_set_bulk_reply,
    kt_binary.MAGIC_REMOVE_BULK: kt_binary.parse_remove_bulk_reply,
    kt_binary.MAGIC_GET_BULK: kt_binary.parse_get_bulk_reply,
    kt_binary.MAGIC_PLAY_SCRIPT: kt_binary.parse_play_script_reply,
}


def _check_binary_response(step, req, raw_resp):
    resp = step.get("response")
    magic = _magic(req)
    if not raw_resp:
        return False
    if resp.get("magic", "").startswith("0xbf") or resp.get("bytes") == 1:
        assert raw_resp == kt_binary.ERROR_REPLY
        parser = _BINARY_PARSERS.get(magic, kt_binary.parse_set_bulk_reply)
        with pytest.raises(ServerError) as info:
            parser(raw_resp)
        assert info.value.code == 0xBF
        if magic == kt_binary.MAGIC_REPLICATION:
            with pytest.raises(ServerError):
                kt_binary.parse_replication_frame(raw_resp, started=False)
        return True
    volatile = _volatile(step, "response.")
    parser = _BINARY_PARSERS[magic]
    for cut in range(len(raw_resp)):
        assert parser(raw_resp[:cut]) is None
    result, end = parser(raw_resp + b"\xba")  # trailing bytes of a next reply are left alone
    assert end == len(raw_resp)
    if magic in (kt_binary.MAGIC_SET_BULK, kt_binary.MAGIC_REMOVE_BULK):
        assert result == resp["hits"]
        assert kt_binary.encode_count_reply(magic, result) == raw_resp
    elif magic == kt_binary.MAGIC_GET_BULK:
        assert len(result) == resp["hits"] == len(resp["records"])
        for i, (got, want) in enumerate(zip(result, resp["records"])):
            assert got[:3] == (want["dbidx"], _b(want["key"]), _b(want["value"]))
            if f"records[{i}].xt" not in volatile:
                assert got[3] == want["xt"]
        if not volatile:
            assert kt_binary.encode_get_bulk_reply(result) == raw_resp
        if len(req["records"]) == 1:
            one, end1 = kt_binary.parse_get_one_reply(bytearray(raw_resp))
            assert end1 == len(raw_resp)
            assert one == (None if not result else (result[0][2], result[0][3]))
    elif magic == kt_binary.MAGIC_PLAY_SCRIPT:
        assert result == [(_b(r["key"]), _b(r["value"])) for r in resp["records"]]
        assert len(result) == resp["rnum"]
        assert kt_binary.encode_play_script_reply(list(reversed(result))) == raw_resp
    return True


def test_kt_binary_vectors():
    data = _load("kt_binary.json")
    counted = {"steps": 0, "client_requests": 0, "responses": 0}
    for _name, step in _steps(data):
        req = step["request"]
        raw = bytes.fromhex(step["request_hex"])
        raw_resp = bytes.fromhex(step["response_hex"])
        if "method" in req:  # an HTTP step: covered by the RPC checks below
            _check_http_step(step, {})
            counted["steps"] += 1
            continue
        built = _binary_client_request(req)
        if built is not None:
            assert built == raw, step["note"]
            counted["client_requests"] += 1
        _check_binary_server_parse(req, raw)
        if _check_binary_response(step, req, raw_resp):
            counted["responses"] += 1
        counted["steps"] += 1
    print(f"kt_binary vectors: {counted}")
    assert counted["steps"] == sum(len(s["steps"]) for s in data["scenarios"]) == 47
    assert counted["client_requests"] >= 40 and counted["responses"] >= 35


# --------------------------------------------------------------------------- HTTP / RPC


def _rebuild_http_request(req):
    """Rebuild a recorded HTTP request from its decoded fields."""
    rpc = req.get("rpc")
    if rpc is not None and rpc.get("params") is not None:
        params = [(_b(k), _b(v)) for k, v in rpc["params"]]
        body = kt_rpc.encode_tsv(params, rpc["colenc"])
    else:
        body = bytes.fromhex(req["body_hex"])
    assert body == bytes.fromhex(req["body_hex"])
    headers = [tuple(h) for h in req["headers"]]
    built = http.build_request(req["method"], req["path"], headers, body, req["version"])
    # The RPC helper reproduces the standard requests (POST, Host + Content-Type [+ Connection]).
    standard = rpc is not None and rpc.get("params") is not None
    if standard and req["method"] == "POST" and "?" not in req["path"]:
        names = [h[0] for h in headers]
        content_type = dict(headers).get("Content-Type")
        if names in (
            ["Host", "Content-Type", "Content-Length"],
            ["Host", "Content-Type", "Connection", "Content-Length"],
        ) and content_type == kt_rpc.tsv_content_type(rpc["colenc"]):
            helper = kt_rpc.build_rpc_request(
                rpc["procedure"], params, dict(headers)["Host"], rpc["colenc"], "Connection" not in names
            )
            assert helper == built
            if rpc["colenc"] in ("B", None):
                auto = kt_rpc.build_rpc_request(rpc["procedure"], params, dict(headers)["Host"])
                expected = kt_rpc.choose_request_encoding(params)
                assert kt_rpc.parse_colenc(auto.split(b"\r\n")[2][14:].decode()) == expected
    return built


def _check_server_params(step, stats):
    req = step["request"]
    rpc = req.get("rpc")
    if rpc is None:
        return
    raw_body = bytes.fromhex(req["body_hex"])
    content_type = dict(tuple(h) for h in req["headers"]).get("Content-Type")
    path, _, query = req["path"].partition("?")
    assert kt_rpc.parse_procedure(path.encode()) == rpc["procedure"]
    got = kt_rpc.parse_rpc_params(query.encode() or None, raw_body, content_type)
    if rpc.get("params") is not None and not query:
        want = {_b(k): _b(v) for k, v in rpc["params"]} if content_type else {}
        assert got == want
        stats["server_params"] += 1
    resp = step.get("response") or {}
    # echo answers its input map: the definitive check of query/body/colenc handling.
    if rpc["procedure"] == "echo" and resp.get("status") == 200:
        assert got == {_b(k): _b(v) for k, v in resp["body_tsv"]}
        stats["server_params"] += 1


def _check_response(resp, raw, head, step, stats, eof_after):
    volatile = _volatile(step, "response.")
    parsed = http.parse_response(raw, 0, head_request=head)
    assert parsed is not None
    response, end = parsed
    for cut in (0, 1, len(raw) // 2, end - 1):
        if 0 <= cut < end:
            assert http.parse_response(raw[:cut], 0, head_request=head) is None
    assert response.status == resp["status"] and response.reason == resp["reason"]
    assert [h[0] for h in response.headers] == resp["header_order"]
    volatile_headers = set(resp.get("volatile_headers", []))
    for name, value in resp["headers"]:
        if f"headers.{name}" not in volatile:
            assert response.header(name) == value
    got_headers = [(n, v) for n, v in response.headers if n not in volatile_headers]
    assert [n for n, _ in got_headers] == [n for n, _ in resp["headers"]]
    if "body_hex" not in volatile:
        assert response.body == bytes.fromhex(resp["body_hex"])
    assert response.keep_alive == (not eof_after)
    if "body_tsv" in resp:
        colenc = kt_rpc.parse_colenc(response.content_type)
        assert colenc == resp["body_colenc"]
        pairs = kt_rpc.decode_tsv_pairs(response.body, response.content_type)
        want = [(_b(k), _b(v)) for k, v in resp["body_tsv"]]
        assert len(pairs) == len(want)
        for (gk, gv), (wk, wv) in zip(pairs, want):
            assert gk == wk
            if f"body_tsv.{gk.decode('utf-8', 'replace')}" not in volatile:
                assert gv == wv
        status, output = kt_rpc.parse_rpc_response(response)
        assert status == resp["status"] and list(output) == [k for k, _ in pairs]
        # Server direction: encoding choice, order and bytes of the body.
        assert kt_rpc.checkmapenc(dict(want)) == resp["body_colenc"]
        if not volatile:
            body, content_type = kt_rpc.encode_rpc_output(dict(want))
            assert body == response.body and content_type == response.content_type
            stats["server_bodies"] += 1
        # Client error helper.
        status = response.status
        if 200 <= status < 300:
            assert kt_rpc.raise_for_rpc_status(status, output, "p") is True
        elif 450 <= status < 500:
            assert kt_rpc.raise_for_rpc_status(status, output, "p") is False
            assert kt_rpc.status_to_rv(status) == kt_rpc.RV_LOGIC
        else:
            with pytest.raises(ServerError) as info:
                kt_rpc.raise_for_rpc_status(status, output, "p")
            assert info.value.code == status and info.value.procedure == "p"
            assert info.value.message == output[b"ERROR"].decode()
        rv = kt_rpc.status_to_rv(status)
        if status in (200, 400, 450, 500, 501, 503):
            assert kt_rpc.rv_to_status(rv) == status
    stats["responses"] += 1
    return end


def _check_http_step(step, stats):
    stats.setdefault("client_requests", 0)
    stats.setdefault("responses", 0)
    stats.setdefault("server_params", 0)
    stats.setdefault("server_bodies", 0)
    req = step["request"]
    raw = bytes.fromhex(step["request_hex"])
    built = _rebuild_http_request(req)
    for extra in req.get("pipelined_requests_hex", []):
        built += bytes.fromhex(extra)
    assert built == raw, step["note"]
    stats["client_requests"] += 1
    _check_server_params(step, stats)
    raw_resp = bytes.fromhex(step["response_hex"])
    if step.get("response_incomplete"):
        assert http.parse_response(raw_resp) is None
        return
    responses = step.get("responses") or [step["response"]]
    off = 0
    for i, resp in enumerate(responses):
        last = i == len(responses) - 1
        end = _check_response(resp, raw_resp[off:], req["method"] == "HEAD", step, stats,
                              last and step.get("server_closed", False))
        off += end
    assert off == len(raw_resp)


def test_kt_rpc_vectors():
    data = _load("kt_rpc.json")
    stats = {"steps": 0}
    for _name, step in _steps(data):
        _check_http_step(step, stats)
        stats["steps"] += 1
    print(f"kt_rpc vectors: {stats}")
    assert stats["steps"] == sum(len(s["steps"]) for s in data["scenarios"]) == 203
    assert stats["client_requests"] == 203
    assert stats["server_params"] >= 150 and stats["server_bodies"] >= 150

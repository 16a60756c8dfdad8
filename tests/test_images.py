"""Images: chat uploads checked by content, stored under generated names, served to their owner or by
signed URL, sent to vision models only, avatars, and the retention job."""

from __future__ import annotations

import base64
import struct
import time
import zlib
from datetime import timedelta
from pathlib import Path

import pytest

from common import images
from common.db import execute, fetch_all, fetch_one, utcnow
from tests.api_client import ApiClient
from tests.chat_support import fake_connection, message, messages, new_session, open_stream, send
from tests.conftest import PASSWORD, close_app, make_app

VISION = "fake-vision"
PLAIN = "fake-chat"


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(
        b"IEND", b""
    )


PNG = _png()
GIF = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,"
       b"\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
WEBP = base64.b64decode("UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==")
JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAP//////////////////////////////////////////////////////////////////"
    "////////////////////wgALCAABAAEBAREA/8QAFBABAAAAAAAAAAAAAAAAAAAAAP/aAAgBAQABPxA="
)


def upload(data: bytes, mime: str = "image/png") -> dict:
    return {"data": base64.b64encode(data).decode(), "mime": mime}


@pytest.fixture
def chat(api, admin, fake):
    """An admin with the fake provider: `fake-vision` marked vision-capable by a catalog override."""
    connection_id = fake_connection(admin, fake, [VISION, PLAIN])
    reply = admin.put("/api/catalog/models/tags",
                      {"connectionId": connection_id, "rawId": VISION, "capabilities": {"vision": True}})
    assert reply.status == 200, reply.body
    return admin


def image_dir(app) -> Path:
    return Path(app.config["PARLEY"].data_dir) / "images"


def stored_files(app) -> list[Path]:
    return [p for p in image_dir(app).rglob("*") if p.is_file()] if image_dir(app).exists() else []


def image_rows(app) -> list[dict]:
    return fetch_all(app.extensions["parley.db"], "SELECT * FROM images ORDER BY id")


def quota_used(app) -> int:
    row = fetch_one(app.extensions["parley.db"], "SELECT SUM(used) AS n FROM quota_counters")
    return row["n"] or 0


def send_images(client: ApiClient, session_id: int, items: list[dict], content: str = "what is this?"):
    return send(client, session_id, content, images=items)


def image_urls(client: ApiClient, session_id: int) -> list[str]:
    listed = client.get(f"/api/chat/sessions/{session_id}/messages").data["messages"]
    return [url for m in listed for url in m["images"]]


def fetch(client: ApiClient | None, url: str, app=None):
    """GET an image as `client` (bearer token and cookie jar), or with no credentials at all."""
    if client is None:
        return app.test_client().get(url)
    headers = {"Authorization": f"Bearer {client.token}"} if client.token else {}
    return client.client.get(url, headers=headers)


def unsigned(url: str) -> str:
    return url.split("?", 1)[0]


# --- sending images -------------------------------------------------------------------------------


def test_an_image_reaches_a_vision_model_as_an_image_url_part(app, chat, fake):
    stream = send_images(chat, new_session(chat, VISION), [upload(PNG)])
    assert stream.status == 200 and stream.events[-1].data == "[DONE]"
    sent = fake.last_request(model=VISION)["body"]["messages"][-1]
    assert sent["content"][0] == {"type": "text", "text": "what is this?"}
    assert sent["content"][1] == {
        "type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()}}


def test_the_message_lists_its_image_as_a_signed_url(app, chat):
    session_id = new_session(chat, VISION)
    stream = send_images(chat, session_id, [upload(PNG)])
    user_message = message(app, stream.events[0].data["messageId"])
    [path] = images.stored_paths(user_message["images"])
    [url] = image_urls(chat, session_id)
    assert url.startswith(f"/chat-images/{path}?exp=") and "&sig=" in url
    assert (image_dir(app) / path).read_bytes() == PNG


def test_each_accepted_type_is_stored_under_a_generated_name_with_its_sniffed_extension(app, chat):
    items = [upload(PNG), upload(JPEG, "image/jpeg"), upload(WEBP, "image/webp"), upload(GIF, "image/gif")]
    send_images(chat, new_session(chat, VISION), items)
    rows = image_rows(app)
    assert [r["mime"] for r in rows] == ["image/png", "image/jpeg", "image/webp", "image/gif"]
    assert [r["path"].rsplit(".", 1)[1] for r in rows] == ["png", "jpg", "webp", "gif"]
    assert all(images.PATH_PATTERN.fullmatch(r["path"]) for r in rows)
    now = utcnow()
    assert all(r["path"].startswith(f"{now:%Y}/{now:%m}/") for r in rows)


def test_images_are_refused_for_a_model_without_vision_and_nothing_is_written(app, chat):
    session_id = new_session(chat, PLAIN)
    refused = chat.post("/api/chat/stream", {"sessionId": session_id, "content": "see", "images": [upload(PNG)]})
    assert refused.status == 400 and refused.code == "model_no_vision"
    assert messages(app, session_id) == []
    assert quota_used(app) == 0
    assert image_rows(app) == [] and stored_files(app) == []


def test_a_png_declared_as_gif_is_stored_and_served_as_png(app, chat):
    session_id = new_session(chat, VISION)
    send_images(chat, session_id, [upload(PNG, "image/gif")])
    [row] = image_rows(app)
    assert row["mime"] == "image/png" and row["path"].endswith(".png")
    served = fetch(chat, image_urls(chat, session_id)[0])
    assert served.status_code == 200 and served.headers["Content-Type"] == "image/png"


def test_a_text_file_declared_as_png_is_refused(app, chat):
    session_id = new_session(chat, VISION)
    reply = chat.post("/api/chat/stream", {"sessionId": session_id, "content": "x",
                                           "images": [upload(b"<html><script>alert(1)</script></html>")]})
    assert reply.status == 400 and reply.code == "invalid_image"
    assert messages(app, session_id) == [] and stored_files(app) == []


def test_more_than_four_images_are_refused(app, chat):
    session_id = new_session(chat, VISION)
    reply = chat.post("/api/chat/stream", {"sessionId": session_id, "content": "x", "images": [upload(PNG)] * 5})
    assert reply.status == 400 and reply.code == "too_many_images"
    assert messages(app, session_id) == []


def test_an_image_over_15_mb_is_refused_with_413(app, chat):
    session_id = new_session(chat, VISION)
    big = PNG + b"\x00" * (images.MAX_IMAGE_BYTES + 1 - len(PNG))
    reply = chat.post("/api/chat/stream", {"sessionId": session_id, "content": "x", "images": [upload(big)]})
    assert reply.status == 413 and reply.code == "image_too_large"
    assert messages(app, session_id) == [] and stored_files(app) == []


def test_invalid_base64_is_refused(app, chat):
    session_id = new_session(chat, VISION)
    reply = chat.post("/api/chat/stream", {"sessionId": session_id, "content": "x",
                                           "images": [{"data": "iVBOR!!not*base64", "mime": "image/png"}]})
    assert reply.status == 400 and reply.code == "invalid_base64"


BAD_IMAGES = {
    "a_string": "iVBORw0KGgo=",
    "an_object": {"data": "x"},
    "a_number_item": [1],
    "a_null_item": [None],
    "a_list_item": [[upload(PNG)]],
    "no_data": [{"mime": "image/png"}],
    "data_a_number": [{"data": 12, "mime": "image/png"}],
    "data_empty": [{"data": "", "mime": "image/png"}],
    "data_a_list": [{"data": ["iVBOR"], "mime": "image/png"}],
    "mime_a_number": [{"data": upload(PNG)["data"], "mime": 7}],
    "non_ascii_base64": [{"data": "iVBORé==", "mime": "image/png"}],
    "one_char_too_many": [{"data": "iVBORw0KG", "mime": "image/png"}],
    "data_url_not_base64": [{"data": "data:image/png,raw", "mime": "image/png"}],
    "bmp": [upload(b"BM" + b"\x00" * 60, "image/bmp")],
    "svg": [upload(b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>", "image/svg+xml")],
    "truncated_webp": [upload(b"RIFF\x00\x00", "image/webp")],
}


@pytest.mark.parametrize("case", BAD_IMAGES)
def test_malformed_images_are_a_4xx_never_a_500(app, chat, case):
    session_id = new_session(chat, VISION)
    reply = chat.post("/api/chat/stream", {"sessionId": session_id, "content": "x", "images": BAD_IMAGES[case]})
    assert reply.status in (400, 413), reply.body
    assert reply.body["success"] is False and isinstance(reply.error, str)
    assert messages(app, session_id) == [] and image_rows(app) == []


def test_a_data_url_with_line_breaks_and_no_padding_is_accepted(app, chat):
    encoded = base64.b64encode(GIF).decode().rstrip("=")
    data = "data:image/gif;base64," + "\n".join(encoded[i:i + 16] for i in range(0, len(encoded), 16))
    stream = send_images(chat, new_session(chat, VISION), [{"data": data, "mime": "image/gif"}])
    assert stream.status == 200
    assert (image_dir(app) / image_rows(app)[0]["path"]).read_bytes() == GIF


def test_an_image_without_text_is_a_message(app, chat, fake):
    session_id = new_session(chat, VISION)
    stream = send(chat, session_id, "", images=[upload(PNG)])
    assert stream.status == 200, stream.json
    sent = fake.last_request(model=VISION)["body"]["messages"][-1]
    assert [part["type"] for part in sent["content"]] == ["image_url"]


def test_images_cannot_be_sent_with_a_reply_reference(app, chat):
    session_id = new_session(chat, VISION)
    first = send(chat, session_id, "hello")
    reply = chat.post("/api/chat/stream", {"sessionId": session_id, "replyToMessageId": first.events[0].data[
        "messageId"], "images": [upload(PNG)]})
    assert reply.status == 400 and reply.code == "validation_error"


def test_a_turn_that_is_not_created_leaves_no_image_and_no_quota(app, chat, monkeypatch):
    from common.chat import store

    def refuse(*_args, **_kwargs):
        raise store.ConcurrencyLimitReached("Too many answers are being generated at once")

    monkeypatch.setattr(store, "create_turn", refuse)
    session_id = new_session(chat, VISION)
    reply = chat.post("/api/chat/stream", {"sessionId": session_id, "content": "x", "images": [upload(PNG)]})
    assert reply.status == 429
    assert image_rows(app) == [] and stored_files(app) == [] and quota_used(app) == 0


def test_earlier_images_are_sent_again_with_the_history(app, chat, fake):
    session_id = new_session(chat, VISION)
    send_images(chat, session_id, [upload(GIF, "image/gif")], "first")
    send(chat, session_id, "and now?")
    sent = fake.last_request(model=VISION)["body"]["messages"]
    assert sent[0]["content"][1]["image_url"]["url"].startswith("data:image/gif;base64,")
    assert sent[-1]["content"] == "and now?"


def test_regenerating_an_answer_sends_the_questions_images_again(app, chat, fake):
    session_id = new_session(chat, VISION)
    first = send_images(chat, session_id, [upload(PNG)])
    regenerated = open_stream(chat, "/api/chat/regenerate",
                              {"sessionId": session_id, "messageId": first.events[0].data["messageId"]})
    regenerated.read_all()
    assert regenerated.status == 200
    sent = fake.last_request(model=VISION)["body"]["messages"][-1]
    assert sent["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")


def test_chat_bodies_may_be_larger_than_the_json_limit_up_to_the_upload_limit(tmp_path):
    application = make_app(tmp_path / "small", max_upload_body_bytes=3 * 1024 * 1024)
    try:
        client = ApiClient(application).register_admin("admin", PASSWORD)
        two_mb = b'{"sessionId": 1, "content": "' + b"x" * (2 * 1024 * 1024) + b'"}'
        assert client.call("POST", "/api/chat/stream", data=two_mb, content_type="application/json").status == 400
        four_mb = b'{"sessionId": 1, "content": "' + b"x" * (4 * 1024 * 1024) + b'"}'
        too_big = client.call("POST", "/api/chat/stream", data=four_mb, content_type="application/json")
        assert too_big.status == 413 and too_big.code == "payload_too_large"
    finally:
        close_app(application)


# --- serving ---------------------------------------------------------------------------------------


@pytest.fixture
def alice(api, chat):
    return api.user(chat, "alice", PASSWORD)


def alices_image(alice) -> tuple[int, str]:
    session_id = new_session(alice, VISION)
    send_images(alice, session_id, [upload(PNG)])
    return session_id, image_urls(alice, session_id)[0]


def test_the_owner_is_served_the_image_with_safe_headers(app, alice):
    _session, url = alices_image(alice)
    served = fetch(alice, unsigned(url))
    assert served.status_code == 200 and served.data == PNG
    assert served.headers["Content-Type"] == "image/png"
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert served.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert served.headers["Cache-Control"].startswith("private")


def test_the_owner_is_served_the_image_through_the_login_cookie(app, api, alice):
    _session, url = alices_image(alice)
    browser = ApiClient(app)
    assert browser.post("/api/auth/login", {"username": "alice", "password": PASSWORD}).status == 200
    assert fetch(browser, unsigned(url)).status_code == 200


def test_another_user_gets_404(app, api, chat, alice):
    _session, url = alices_image(alice)
    bob = api.user(chat, "bob", PASSWORD)
    assert fetch(bob, unsigned(url)).status_code == 404
    assert fetch(chat, unsigned(url)).status_code == 404  # not even an admin without the signed URL


def test_a_visitor_without_credentials_gets_404(app, alice):
    _session, url = alices_image(alice)
    assert fetch(None, unsigned(url), app).status_code == 404


def test_an_anonymous_visitor_is_served_their_own_image_with_their_cookie(app, chat):
    assert chat.put("/api/settings/system", {"model_access_default_anonymous": "allow"}).status == 200
    visitor = ApiClient(app)
    session_id = new_session(visitor, VISION)
    stream = send_images(visitor, session_id, [upload(PNG)])
    assert stream.status == 200
    path = images.stored_paths(message(app, stream.events[0].data["messageId"])["images"])[0]
    assert fetch(visitor, f"/chat-images/{path}").status_code == 200
    assert fetch(ApiClient(app), f"/chat-images/{path}").status_code == 404  # another visitor


def test_a_signed_url_works_without_credentials(app, alice):
    _session, url = alices_image(alice)
    served = fetch(None, url, app)
    assert served.status_code == 200 and served.data == PNG
    assert served.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"


@pytest.mark.parametrize("tamper", ["signature", "expiry", "path", "no_signature"])
def test_a_tampered_signed_url_is_404(app, alice, tamper):
    _session, url = alices_image(alice)
    path = unsigned(url).removeprefix("/chat-images/")
    query = dict(pair.split("=", 1) for pair in url.split("?")[1].split("&"))
    other_session = new_session(alice, VISION)
    send_images(alice, other_session, [upload(GIF, "image/gif")])
    other_path = unsigned(image_urls(alice, other_session)[0]).removeprefix("/chat-images/")
    if tamper == "signature":
        query["sig"] = ("A" if query["sig"][0] != "A" else "B") + query["sig"][1:]
    elif tamper == "expiry":
        query["exp"] = str(int(query["exp"]) + 86400)
    elif tamper == "path":
        path = other_path
    else:
        del query["sig"]
    tampered = f"/chat-images/{path}?" + "&".join(f"{k}={v}" for k, v in query.items())
    assert fetch(None, tampered, app).status_code == 404


def test_an_expired_signed_url_is_404(app, alice):
    _session, url = alices_image(alice)
    path = unsigned(url).removeprefix("/chat-images/")
    expired = int(time.time()) - 1
    with app.app_context():
        sig = images.signature(path, expired)
    assert fetch(None, f"/chat-images/{path}?exp={expired}&sig={sig}", app).status_code == 404
    assert fetch(alice, f"/chat-images/{path}?exp={expired}&sig={sig}").status_code == 200  # the owner still is


TRAVERSALS = [
    "../secrets.json", "..%2fsecrets.json", "%2e%2e/secrets.json", "%2e%2e%2fparley.db", "2025/01/../../secrets.json",
    "/etc/passwd", "%2fetc%2fpasswd", "..\\secrets.json", "..%5csecrets.json", "2025/01/%2e%2e%2f%2e%2e%2fparley.db",
    "2025/01/0123456789abcdef0123456789abcdef.png%00.txt", "2025/01/0123456789ABCDEF0123456789ABCDEF.png",
    "images/2025/01/0123456789abcdef0123456789abcdef.png", "secrets.json", ".", "2025",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_is_404(app, alice, path):
    _session, url = alices_image(alice)
    query = url.split("?", 1)[1]
    for route in ("/chat-images/", "/avatars/"):
        for suffix in ("", "?" + query):
            served = fetch(alice, route + path + suffix)
            assert served.status_code == 404, (route, path, served.status_code)
            assert b"jwt_secret" not in served.data and b"SQLite" not in served.data


def test_an_image_whose_file_is_gone_is_404(app, alice):
    _session, url = alices_image(alice)
    for file in stored_files(app):
        file.unlink()
    assert fetch(alice, unsigned(url)).status_code == 404


# --- avatars ---------------------------------------------------------------------------------------


def test_an_avatar_upload_is_stored_and_served_publicly(app, alice):
    reply = alice.put("/api/settings/personal", {"avatar": upload(JPEG, "image/png")})
    assert reply.status == 200, reply.body
    url = reply.data["avatar_url"]
    assert url.startswith("/avatars/") and url.endswith(".jpg")
    assert alice.get("/api/auth/me").data["avatarUrl"] == url
    served = fetch(None, url, app)
    assert served.status_code == 200 and served.data == JPEG
    assert served.headers["Content-Type"] == "image/jpeg"
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert served.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert (Path(app.config["PARLEY"].data_dir) / "avatars" / url.removeprefix("/avatars/")).is_file()


def test_replacing_an_avatar_deletes_the_old_one(app, alice):
    old = alice.put("/api/settings/personal", {"avatar": upload(PNG)}).data["avatar_url"]
    new = alice.put("/api/settings/personal", {"avatar": upload(GIF, "image/gif")}).data["avatar_url"]
    assert new != old
    assert fetch(None, old, app).status_code == 404
    assert fetch(None, new, app).status_code == 200
    assert [r["path"] for r in image_rows(app)] == [new.removeprefix("/avatars/")]


def test_a_null_avatar_removes_it(app, alice):
    old = alice.put("/api/settings/personal", {"avatar": upload(PNG)}).data["avatar_url"]
    reply = alice.put("/api/settings/personal", {"avatar": None})
    assert reply.status == 200 and reply.data["avatar_url"] is None
    assert fetch(None, old, app).status_code == 404 and image_rows(app) == []


def test_an_avatar_over_2_mb_is_refused(app, alice):
    big = PNG + b"\x00" * (images.MAX_AVATAR_BYTES + 1 - len(PNG))
    reply = alice.put("/api/settings/personal", {"avatar": upload(big)})
    assert reply.status == 413 and reply.code == "image_too_large"
    assert image_rows(app) == []


@pytest.mark.parametrize("avatar", [{"data": "%%%"}, {"data": base64.b64encode(b"hello").decode()}, "x", [1], {}])
def test_a_bad_avatar_is_a_4xx(app, alice, avatar):
    reply = alice.put("/api/settings/personal", {"avatar": avatar, "personal_prompt": "unchanged?"})
    assert reply.status == 400 and reply.body["success"] is False
    assert alice.get("/api/settings/personal").data["personal_prompt"] == ""


def test_a_chat_image_is_not_served_as_an_avatar(app, alice):
    _session, url = alices_image(alice)
    assert fetch(None, url.replace("/chat-images/", "/avatars/"), app).status_code == 404


# --- retention ---------------------------------------------------------------------------------------


def run_retention(app) -> dict:
    from jobs.image_retention import run

    with app.app_context():
        return run(app)


def age(app, session_id: int, days: int) -> None:
    """Make a session's messages and their images `days` old."""
    then = utcnow() - timedelta(days=days)
    db = app.extensions["parley.db"]
    with db as tx:
        execute(tx, "UPDATE messages SET created_at = :t, updated_at = :t WHERE session_id = :s", t=then, s=session_id)
        execute(tx, "UPDATE images SET created_at = :t WHERE message_id IN (SELECT id FROM messages WHERE "
                    "session_id = :s)", t=then, s=session_id)


def test_retention_deletes_old_images_and_keeps_recent_ones(app, alice):
    old_session, old_url = alices_image(alice)
    new_session_id, new_url = alices_image(alice)
    age(app, old_session, 31)
    summary = run_retention(app)
    assert summary["expired"] == 1 and summary["files"] == 1
    assert fetch(alice, unsigned(old_url)).status_code == 404
    assert fetch(alice, unsigned(new_url)).status_code == 200
    assert len(image_rows(app)) == 1 and len(stored_files(app)) == 1
    assert image_urls(alice, old_session) == []  # the message no longer lists it
    assert image_urls(alice, new_session_id) != []


def test_retention_is_idempotent(app, alice):
    old_session, _url = alices_image(alice)
    age(app, old_session, 31)
    run_retention(app)
    again = run_retention(app)
    assert again["expired"] == 0 and again["files"] == 0


def test_retention_follows_the_setting(app, chat, alice):
    session_id, url = alices_image(alice)
    age(app, session_id, 10)
    assert run_retention(app)["expired"] == 0
    assert chat.put("/api/settings/system", {"chat_image_retention_days": 7}).status == 200
    assert run_retention(app)["expired"] == 1


def test_retention_keeps_an_old_image_whose_question_was_answered_again_recently(app, alice):
    session_id, url = alices_image(alice)
    age(app, session_id, 31)
    question = messages(app, session_id)[0]
    regenerated = open_stream(alice, "/api/chat/regenerate", {"sessionId": session_id, "messageId": question["id"]})
    regenerated.read_all()
    assert run_retention(app)["expired"] == 0
    assert fetch(alice, unsigned(url)).status_code == 200


def test_retention_never_deletes_the_images_of_a_generation_still_streaming(app, chat, alice):
    session_id, url = alices_image(alice)
    age(app, session_id, 31)
    db = app.extensions["parley.db"]
    answer = messages(app, session_id)[1]
    with db as tx:  # the answer is still streaming (its rows are old, e.g. a long silent reasoning phase)
        execute(tx, "UPDATE messages SET stream_status = 'streaming' WHERE id = :id", id=answer["id"])
    assert run_retention(app)["expired"] == 0
    assert fetch(alice, unsigned(url)).status_code == 200


def test_retention_removes_images_of_deleted_sessions_after_a_grace_period(app, alice):
    session_id, _url = alices_image(alice)
    assert alice.delete(f"/api/sessions/{session_id}").status == 200
    [row] = image_rows(app)
    assert row["message_id"] is None
    assert run_retention(app)["unlinked"] == 0  # within the grace period: might be a request storing it now
    with app.extensions["parley.db"] as tx:
        execute(tx, "UPDATE images SET created_at = :t", t=utcnow() - timedelta(hours=2))
    assert run_retention(app)["unlinked"] == 1
    assert image_rows(app) == [] and stored_files(app) == []


def test_retention_relinks_an_unlinked_image_that_a_message_lists(app, alice):
    session_id, url = alices_image(alice)
    with app.extensions["parley.db"] as tx:
        execute(tx, "UPDATE images SET message_id = NULL, created_at = :t", t=utcnow() - timedelta(hours=2))
    summary = run_retention(app)
    assert summary["relinked"] == 1 and summary["unlinked"] == 0
    assert image_rows(app)[0]["message_id"] == messages(app, session_id)[0]["id"]
    assert fetch(alice, unsigned(url)).status_code == 200


def test_retention_removes_avatars_that_are_no_longer_used(app, chat, alice):
    alice.put("/api/settings/personal", {"avatar": upload(PNG)})
    db = app.extensions["parley.db"]
    user_id = fetch_one(db, "SELECT id FROM users WHERE username = 'alice'")["id"]
    assert chat.delete(f"/api/users/{user_id}").status == 200
    with db as tx:
        execute(tx, "UPDATE images SET created_at = :t", t=utcnow() - timedelta(hours=2))
    assert run_retention(app)["avatars"] == 1
    assert image_rows(app) == [] and not any((Path(app.config["PARLEY"].data_dir) / "avatars").rglob("*.png"))


def test_the_retention_job_is_registered():
    from jobs.registry import all_jobs

    assert "image_retention" in all_jobs()

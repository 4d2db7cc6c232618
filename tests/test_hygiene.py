"""Error hygiene helpers: banners and upstream debug pages."""

from __future__ import annotations

import json

import pytest

from bastion.hygiene import is_banner, looks_like_debug_page, scrubbed_body, should_scrub, strip_banners

DEBUG_PAGES = [
    b'Traceback (most recent call last):\n  File "/app/x.py", line 3, in <module>\nZeroDivisionError',
    b"<title>TypeError // Werkzeug Debugger</title>",
    b"You're seeing this error because you have <code>DEBUG = True</code> in your Django settings file.",
    b"Exception in thread \"main\" java.lang.NullPointerException\n\tat com.acme.Svc.get(Svc.java:42)",
    b"<h1>Whitelabel Error Page</h1>",
    b"<h1>Server Error in '/' Application.</h1>",
    b"PHP Fatal error:  Uncaught Error: Call to undefined function foo() in /var/www/a.php on line 7",
    b"TypeError: x is not a function\n    at Object.<anonymous> (/srv/app.js:10:5)",
    b"app/controllers/users_controller.rb:12:in `show'",
    b"goroutine 1 [running]:\nmain.main()",
    b"SQLSTATE[42000]: Syntax error or access violation",
    b"You have an error in your SQL syntax; check the manual",
    b"ORA-00933: SQL command not properly ended",
    b'ERROR:  syntax error at or near "\'"',
]

CLEAN = [
    b'{"error": "internal"}',
    b'{"type": "about:blank", "title": "Internal Server Error", "status": 500}',
    b"<html><body>Something went wrong. We are looking into it.</body></html>",
    b"",
    b"Service temporarily unavailable, retry later",
]


@pytest.mark.parametrize("body", DEBUG_PAGES)
def test_debug_pages_detected(body):
    assert looks_like_debug_page(body)
    assert should_scrub(500, body)


@pytest.mark.parametrize("body", CLEAN)
def test_plain_errors_left_alone(body):
    assert not looks_like_debug_page(body)
    assert not should_scrub(500, body)


def test_only_server_errors_are_scrubbed():
    trace = DEBUG_PAGES[0]
    assert not should_scrub(200, trace)  # the content itself (a log viewer, a code host)
    assert not should_scrub(404, trace)
    assert should_scrub(503, trace)


def test_banners():
    assert is_banner("Server") and is_banner("x-powered-by") and is_banner("X-AspNet-Version")
    assert not is_banner("Content-Type")
    headers = [("Server", "nginx/1.2"), ("Content-Type", "text/plain"), ("X-Powered-By", "PHP"), ("X-A", "1")]
    assert strip_banners(headers) == [("Content-Type", "text/plain"), ("X-A", "1")]


def test_scrubbed_body_is_a_problem_document_without_upstream_detail():
    doc = json.loads(scrubbed_body(500, "rid-1"))
    assert doc == {"type": "https://bastion.dev/problems/upstream-error", "title": "Internal Server Error",
                   "status": 500, "request_id": "rid-1"}
    assert json.loads(scrubbed_body(599, "r"))["title"] == "Upstream error"

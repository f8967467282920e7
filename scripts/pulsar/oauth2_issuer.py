#!/usr/bin/env python3
"""A small OAuth2 issuer for the secured test broker, over HTTPS: it
answers the client-credentials grant with an HS256 JWT that the broker
accepts, as a managed Pulsar service's issuer does.

    oauth2_issuer.py --port P --cert PEM --key PEM --secret KEYFILE --clients JSON --ttl SECONDS

CLIENTS maps each client_id to {"secret": ..., "role": ...}. Tokens live
TTL seconds. GET /.well-known/openid-configuration names the token
endpoint; POST /oauth/token takes grant_type=client_credentials with
client_id and client_secret in the form (or HTTP basic auth). Every token
issued is counted on GET /stats, for tests that watch refreshes.
"""
import argparse
import base64
import json
import ssl
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from jwt import mint

ISSUED = {}
LOCK = threading.Lock()


def handler(args, secret, clients):
    base = f"https://localhost:{args.port}"

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *a):
            pass

        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/.well-known/openid-configuration":
                self.answer(200, {"issuer": base, "token_endpoint": base + "/oauth/token"})
            elif self.path == "/stats":
                with LOCK:
                    self.answer(200, dict(ISSUED))
            else:
                self.answer(404, {"error": "not_found"})

        def do_POST(self):
            if self.path != "/oauth/token":
                return self.answer(404, {"error": "not_found"})
            length = int(self.headers.get("Content-Length", "0"))
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            basic = self.headers.get("Authorization", "")
            if basic.startswith("Basic "):
                cid, _, csecret = base64.b64decode(basic[6:]).decode().partition(":")
                form.setdefault("client_id", cid)
                form.setdefault("client_secret", csecret)
            if form.get("grant_type") != "client_credentials":
                return self.answer(400, {"error": "unsupported_grant_type"})
            client = clients.get(form.get("client_id", ""))
            if client is None or client["secret"] != form.get("client_secret"):
                return self.answer(401, {"error": "invalid_client"})
            token = mint(secret, client["role"], args.ttl, form.get("audience"))
            with LOCK:
                ISSUED[form["client_id"]] = ISSUED.get(form["client_id"], 0) + 1
            self.answer(200, {"access_token": token, "token_type": "Bearer", "expires_in": args.ttl})

    return Handler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--clients", required=True)
    p.add_argument("--ttl", type=int, default=3600)
    args = p.parse_args()
    with open(args.secret, "rb") as f:
        secret = f.read()
    with open(args.clients) as f:
        clients = json.load(f)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler(args, secret, clients))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Mint an HS256 JWT that the secured test broker accepts (its
tokenSecretKey is the raw bytes of KEYFILE).

    jwt.py KEYFILE SUBJECT [--ttl SECONDS] [--aud AUDIENCE]

A negative --ttl mints a token that expired that long ago. Prints the token.
"""
import argparse
import base64
import hashlib
import hmac
import json
import time


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(key: bytes, subject: str, ttl=None, audience=None) -> str:
    header = {"alg": "HS256", "typ": "JWT"}
    claims = {"sub": subject, "iat": int(time.time())}
    if ttl is not None:
        claims["exp"] = int(time.time()) + ttl
    if audience:
        claims["aud"] = audience
    signing = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    signature = hmac.new(key, signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64(signature)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("keyfile")
    p.add_argument("subject")
    p.add_argument("--ttl", type=int)
    p.add_argument("--aud")
    a = p.parse_args()
    with open(a.keyfile, "rb") as f:
        print(mint(f.read(), a.subject, a.ttl, a.aud))

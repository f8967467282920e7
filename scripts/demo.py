#!/usr/bin/env python3
"""The retail replication demo, run by scripts/demo once the stack is up.

The order service writes to its Postgres database `orders`. sluice captures
the changes into Pulsar and applies them to the warehouse service's Postgres
database and the shipping service's MariaDB database, effectively once
(config/retail.yaml). An order generator places orders, moves them through
their statuses and cancels some (deletes). Some orders arrive over REST
instead, through sluice's HTTP source, and a few of those name a customer
that does not exist: the order service's database refuses them and they are
dead-lettered. A notification service (an HTTP server here) hears of every
order that reaches `shipped`, and an operator webhook of every dead letter,
through sluice's HTTP sink. At the end both targets are compared with the
source, table by table, the notifications and alerts are counted, and the
verdict printed.

Only the standard library and the psql and mariadb clients are used.
"""

import argparse
import datetime
import http.server
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".stack" / "demo"
PG = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At"]
MARIADB = ["mariadb", "-h", "127.0.0.1", "-P", "3306", "-u", "sluice", "-psluice", "-N", "-B"]
ADMIN = "http://127.0.0.1:8080/admin/v2"
NAMESPACE = "public/retail"
ENV = dict(os.environ, PGPASSWORD="sluice")

# What each target holds, and how to read a table the same way on each side:
# one text line per row, in key order, timestamps in UTC with microseconds.
PG_QUERIES = {
    "customers": "SELECT id, name, email, city FROM customers ORDER BY id",
    "orders": "SELECT id, customer_id, status, total::text, "
    "to_char(placed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), "
    "to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') FROM orders ORDER BY id",
    "order_items": "SELECT order_id, line, sku, quantity, unit_price::text FROM order_items ORDER BY order_id, line",
}
MARIADB_QUERIES = {
    "customers": "SELECT id, name, email, city FROM customers ORDER BY id",
    "orders": "SELECT id, customer_id, status, CAST(total AS CHAR), "
    "DATE_FORMAT(placed_at, '%Y-%m-%d %H:%i:%s.%f'), DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s.%f') "
    "FROM orders ORDER BY id",
}
TARGETS = [
    ("warehouse", "Postgres", ["orders", "order_items"]),
    ("shipping", "MariaDB", ["orders", "customers"]),
]
NEXT_STATUS = {"placed": "paid", "paid": "packed", "packed": "shipped"}


def run(cmd, stdin=None, check=True):
    return subprocess.run(cmd, input=stdin, text=True, capture_output=True, env=ENV, check=check)


def psql(db, sql):
    return run(PG + ["-d", db, "-c", sql]).stdout


def mariadb(db, sql):
    return run(MARIADB + ([db] if db else []) + ["-e", sql]).stdout


def rows(engine, db, table):
    if engine == "Postgres":
        out = run(PG + ["-F", "|", "-d", db, "-c", PG_QUERIES[table]]).stdout
    else:
        out = run(MARIADB + [db, "-e", MARIADB_QUERIES[table]]).stdout.replace("\t", "|")
    return [line for line in out.splitlines() if line]


def admin(method, path, body=None):
    request = urllib.request.Request(ADMIN + path, method=method, data=body)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read().decode()
    except urllib.error.HTTPError as e:
        if e.code in (404, 409):
            return None
        raise


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def say(text):
    print(text, flush=True)


def reset():
    """Fresh databases, schemas and topics, so that a second run starts clean."""
    say("demo: creating the orders, warehouse and shipping databases")
    psql("postgres", "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
         "WHERE slot_name = 'sluice_retail' AND NOT active")
    for db in ("orders", "warehouse"):
        psql("postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        psql("postgres", f"CREATE DATABASE {db}")
        run(PG + ["-d", db, "-f", str(ROOT / "config" / "retail" / f"{db}.sql")])
    mariadb(None, "DROP DATABASE IF EXISTS shipping; CREATE DATABASE shipping")
    run(MARIADB + ["shipping"], stdin=(ROOT / "config" / "retail" / "shipping.sql").read_text())
    say(f"demo: preparing the Pulsar namespace {NAMESPACE} (deduplication on)")
    admin("PUT", f"/namespaces/{NAMESPACE}")
    admin("POST", f"/namespaces/{NAMESPACE}/deduplication", b"true")
    for topic in json.loads(admin("GET", f"/persistent/{NAMESPACE}") or "[]"):
        admin("DELETE", "/persistent/" + topic.removeprefix("persistent://") + "?force=true")


class Receiver:
    """An HTTP server that takes POSTs and keeps them: the notification
    service and the operator's webhook. Each request is kept as
    (idempotency key, JSON body)."""

    def __init__(self):
        self.requests = []
        lock = threading.Lock()
        kept = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    doc = json.loads(body)
                except ValueError:
                    doc = None
                with lock:
                    kept.append((self.headers.get("Idempotency-Key"), doc))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def by_key(self):
        """The bodies received, one per idempotency key (retries of one
        delivery carry the same key)."""
        return {key: doc for key, doc in list(self.requests)}

    def close(self):
        self.server.shutdown()


def rest_order(port, order, customer, total):
    """POST a new order to the order service's REST API (sluice's HTTP
    source); True once it answers 200, the order being in Pulsar."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat()
    body = json.dumps({"id": order, "customer_id": customer, "status": "placed",
                       "total": f"{total:.2f}", "placed_at": now, "updated_at": now}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/orders", data=body, method="POST",
        headers={"Content-Type": "application/json", "Idempotency-Key": f"order-{order}"})
    for _ in range(20):
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            # No answer, or 503 (busy, or the records not stored): send the
            # same request again; its idempotency key makes it count once.
            time.sleep(0.5)
    return False


class Generator:
    """Orders placed (over SQL or REST), paid, packed, shipped, and some
    cancelled (deleted)."""

    def __init__(self, seed, api_port):
        self.api_port = api_port
        self.rest_orders = 0
        self.refused_orders = []
        self.random = random.Random(seed)
        self.psql = subprocess.Popen(
            PG + ["-d", "orders", "-v", "ON_ERROR_STOP=0"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            text=True, env=ENV,
        )
        self.next_id = 1
        self.status = {}
        self.lines = {}
        self.changes = 0

    def step(self):
        r = self.random
        open_orders = [o for o, s in self.status.items() if s != "shipped"]
        roll = r.random()
        if roll < 0.1:
            # A new order over REST; one in eight names an unknown customer,
            # which the order service's database refuses (a dead letter).
            order, self.next_id = self.next_id, self.next_id + 1
            refused = r.random() < 0.125
            customer = 9999 if refused else r.randint(1, 200)
            if not rest_order(self.api_port, order, customer, r.randint(100, 99999) / 100):
                raise SystemExit(f"the orders API did not take order {order}")
            self.rest_orders += 1
            if refused:
                self.refused_orders.append(order)
            else:
                self.status[order] = "placed"
                self.lines[order] = 0
            self.changes += 0 if refused else 1
            return
        if roll < 0.55 or not open_orders:
            order, self.next_id = self.next_id, self.next_id + 1
            lines = r.randint(1, 4)
            items = ", ".join(
                f"({order}, {line}, 'sku-{r.randint(1, 500)}', {r.randint(1, 5)}, {r.randint(100, 9999) / 100:.2f})"
                for line in range(1, lines + 1)
            )
            sql = (
                "BEGIN;"
                f"INSERT INTO orders VALUES ({order}, {r.randint(1, 200)}, 'placed', 0, now(), now());"
                f"INSERT INTO order_items VALUES {items};"
                f"UPDATE orders SET total = (SELECT sum(quantity * unit_price) FROM order_items "
                f"WHERE order_id = {order}) WHERE id = {order};"
                "COMMIT;"
            )
            self.status[order] = "placed"
            self.lines[order] = lines
            # The order, its items, and the order again with its total.
            self.changes += 2 + lines
        elif roll < 0.9:
            order = r.choice(open_orders)
            self.status[order] = NEXT_STATUS[self.status[order]]
            sql = f"UPDATE orders SET status = '{self.status[order]}', updated_at = now() WHERE id = {order};"
            self.changes += 1
        else:
            placed = [o for o in open_orders if self.status[o] == "placed"] or open_orders
            order = r.choice(placed)
            del self.status[order]
            # The items go with the order (ON DELETE CASCADE).
            sql = f"DELETE FROM orders WHERE id = {order};"
            self.changes += 1 + self.lines.pop(order)
        self.psql.stdin.write(sql + "\n")
        self.psql.stdin.flush()

    def close(self):
        self.psql.stdin.close()
        self.psql.wait(timeout=60)


def metrics(port):
    """(records applied per sink, lag in seconds per sink) from /metrics."""
    applied, lag = {}, {}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return applied, lag
    for line in text.splitlines():
        for sink, _, _ in TARGETS:
            label = f'{{connector="{sink}",kind="sink"}}'
            if line.startswith("sluice_records_out_total" + label):
                applied[sink] = int(float(line.split()[-1]))
            elif line.startswith("sluice_lag_seconds" + label):
                lag[sink] = float(line.split()[-1])
    return applied, lag


def notifications_and_alerts(notify, alerts, refused):
    """The checks of the two webhooks: (description, ok) pairs."""
    shipped = {int(x) for x in psql("orders", "SELECT id FROM orders WHERE status = 'shipped'").split()}
    notified = {}
    for key, doc in notify.by_key().items():
        order = ((doc or {}).get("after") or {}).get("id")
        notified.setdefault(order, set()).add(key)
    alerted = set()
    for key, doc in alerts.by_key().items():
        value = (doc or {}).get("value") or {}
        error = ((doc or {}).get("properties") or {}).get("sluice.error", "")
        if "foreign key" in error:
            alerted.add(value.get("id"))
    return [
        (f"notification service: {len(notified)} orders notified, {len(shipped)} shipped, "
         f"{sum(len(k) for k in notified.values())} notifications (by idempotency key)",
         set(notified) == shipped and all(len(k) == 1 for k in notified.values())),
        (f"operator webhook: {len(alerted)} dead letters with their reason, "
         f"{len(refused)} orders refused",
         alerted == set(refused)),
    ]


def compare():
    """Per target and table: (source rows, target rows, equal)."""
    source = {table: rows("Postgres", "orders", table) for table in PG_QUERIES}
    out = []
    for target, engine, tables in TARGETS:
        for table in tables:
            copy = rows(engine, target, table)
            out.append((target, engine, table, len(source[table]), len(copy), copy == source[table]))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=60, help="seconds of orders (default 60)")
    parser.add_argument("--rate", type=float, default=20.0, help="order-service transactions per second")
    parser.add_argument("--sluice", default=str(ROOT / "target" / "debug" / "sluice"))
    args = parser.parse_args()
    tty = sys.stdout.isatty()

    STATE.mkdir(parents=True, exist_ok=True)
    reset()
    notify, alerts = Receiver(), Receiver()
    api_port = free_port()
    journal = STATE / "orders-api"
    journal.mkdir(exist_ok=True)
    for old in journal.iterdir():
        old.unlink()
    env = dict(ENV, NOTIFY_URL=f"http://127.0.0.1:{notify.port}/notify",
               ALERTS_URL=f"http://127.0.0.1:{alerts.port}/alerts",
               ORDERS_API_PORT=str(api_port), SLUICE_STATE_DIR=str(journal))
    say(f"demo: the notification service listens on {notify.port}, the operator webhook on "
        f"{alerts.port}, and the order service's REST API (sluice's HTTP source) on {api_port}")
    check = subprocess.run([args.sluice, "check", "--config", str(ROOT / "config" / "retail.yaml")],
                           capture_output=True, text=True, env=env)
    for line in check.stdout.splitlines():
        say(f"  check: {line}")
    if check.returncode != 0:
        return 1
    port = free_port()
    log = open(STATE / "sluice.log", "w")
    say(f"demo: starting sluice on config/retail.yaml (log: {STATE / 'sluice.log'}, "
        f"metrics: http://127.0.0.1:{port}/metrics)")
    sluice = subprocess.Popen(
        [args.sluice, "run", "--config", str(ROOT / "config" / "retail.yaml")],
        stdout=log, stderr=subprocess.STDOUT,
        env=dict(env, SLUICE_HTTP=f"127.0.0.1:{port}", SLUICE_LOG="info"),
    )
    verdict = 1
    try:
        say("demo: waiting for the initial snapshot (200 customers) to reach shipping")
        deadline = time.monotonic() + 180
        while len(rows("MariaDB", "shipping", "customers")) < 200:
            if sluice.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"sluice did not deliver the snapshot; see {STATE / 'sluice.log'}")
            time.sleep(0.5)

        say(f"demo: the order service runs for {args.duration} s at about {args.rate:g} transactions/s")
        generator = Generator(seed=int(time.time()), api_port=api_port)
        start = time.monotonic()
        next_report = start
        while (now := time.monotonic()) < start + args.duration:
            generator.step()
            if now >= next_report:
                applied, lag = metrics(port)
                parts = [f"{generator.changes} changes produced"] + [
                    f"{sink}: {applied.get(sink, 0)} applied, lag {lag.get(sink, 0.0):.1f} s"
                    for sink, _, _ in TARGETS
                ]
                line = f"[{now - start:5.1f}s] " + " | ".join(parts)
                if tty:
                    print("\r" + line + "\033[K", end="", flush=True)
                    next_report = now + 1
                else:
                    say(line)
                    next_report = now + 10
            if sluice.poll() is not None:
                raise SystemExit(f"sluice stopped; see {STATE / 'sluice.log'}")
            time.sleep(1 / args.rate)
        generator.close()
        if tty:
            print()
        say(f"demo: the order service stopped after {generator.changes} changes; waiting for both targets")

        deadline = time.monotonic() + 120
        while True:
            result = compare()
            hooks = notifications_and_alerts(notify, alerts, generator.refused_orders)
            settled = all(equal for *_, equal in result) and all(ok for _, ok in hooks)
            if settled or time.monotonic() > deadline:
                break
            time.sleep(1)
        say("")
        say(f"{'target':<10} {'engine':<9} {'table':<12} {'source rows':>11} {'target rows':>11}  verdict")
        for target, engine, table, n_source, n_target, equal in result:
            mark = "equal" if equal else "DIFFERENT"
            say(f"{target:<10} {engine:<9} {table:<12} {n_source:>11} {n_target:>11}  {mark}")
        say("")
        say(f"orders placed over REST: {generator.rest_orders}, "
            f"of which refused by the order service's database: {len(generator.refused_orders)}")
        for text, ok in hooks:
            say(f"{text}  {'ok' if ok else 'WRONG'}")
        say("")
        if all(equal for *_, equal in result) and all(ok for _, ok in hooks):
            say("VERDICT: both targets equal the source, row by row; every shipped order was "
                "notified once and every dead letter reached the operator.")
            verdict = 0
        elif all(equal for *_, equal in result):
            say(f"VERDICT: both targets equal the source, but a webhook check failed; see {STATE / 'sluice.log'}")
        else:
            say(f"VERDICT: a target differs from the source; see {STATE / 'sluice.log'}")
    finally:
        if sluice.poll() is None:
            sluice.send_signal(signal.SIGINT)
            try:
                sluice.wait(timeout=60)
            except subprocess.TimeoutExpired:
                sluice.kill()
        log.close()
        notify.close()
        alerts.close()
    return verdict


if __name__ == "__main__":
    sys.exit(main())

//! The `http` source against strangers: credentials checked before any of
//! the body is read, bodies read within a deadline and a budget of bytes,
//! connections capped, large arrays kept small in memory, numbers passed as
//! sent, idempotency keys scoped by topic and forgotten after retention, a
//! torn journal survived, and signatures that cover the request's path and
//! content type. Each runs `sluice run` against the real broker, and talks
//! to it over plain sockets where a client library would hide the attack.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sluice_tests::{
    DEADLINE, PULSAR_URL, Sluice, free_port, message_parts, reader, temp_dir, topic, unique,
    wait_for,
};

const TOKEN: &str = "a-token-for-the-order-service";
const SECRET: &str = "a-shared-secret-for-signatures";

/// A pipeline of one `http` source on `input`, with extra source fields and
/// `configs` lines.
fn config(port: u16, api: u16, input: &str, extra: &str, configs: &str) -> String {
    format!(
        "pulsar:\n  serviceUrl: {PULSAR_URL}\nhttp:\n  listen: 127.0.0.1:{port}\n\
         sources:\n  - name: api\n    className: http\n    topicName: {input}\n{extra}\
         \x20   configs:\n      port: {api}\n{configs}"
    )
}

/// Send raw bytes and read what comes back within `wait`: the status line's
/// code, or 0 when nothing came.
fn raw(api: u16, request: &[u8], wait: Duration) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", api))?;
    s.set_read_timeout(Some(wait))?;
    s.write_all(request)?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, text))
}

/// A whole POST: status and body.
fn post(api: u16, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut request = agent.post(format!("http://127.0.0.1:{api}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    match request.send(body) {
        Ok(mut r) => (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        ),
        Err(e) => (0, e.to_string()),
    }
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

/// The process's open descriptors, once the count holds still for a
/// second (within a deadline).
async fn settled(sluice: &Sluice) -> anyhow::Result<usize> {
    let deadline = Instant::now() + DEADLINE;
    let mut last = sluice.open_files().context("no fd count")?;
    let mut still = 0;
    while still < 4 {
        ensure!(
            Instant::now() < deadline,
            "the descriptor count never settled"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let now = sluice.open_files().context("no fd count")?;
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
    Ok(last)
}

async fn listening(api: u16, sluice: &Sluice) -> anyhow::Result<()> {
    wait_for("the http source to listen", DEADLINE, || async move {
        Ok(TcpStream::connect(("127.0.0.1", api)).is_ok().then_some(()))
    })
    .await
    .with_context(|| sluice.log())
}

#[tokio::test]
async fn credentials_are_checked_before_any_of_the_body_is_read() -> anyhow::Result<()> {
    // GIVEN a source with a bearer token
    let (port, api) = (free_port()?, free_port()?);
    let dir = temp_dir("http-lim-auth")?;
    let input = topic(&unique("http-lim-auth"));
    let sluice = Sluice::start(
        &dir,
        &config(
            port,
            api,
            &input,
            "",
            &format!("      authToken: {TOKEN}\n"),
        ),
        port,
    )?;
    listening(api, &sluice).await?;

    // WHEN a client with a wrong token announces 1 MiB and sends none of it
    let started = Instant::now();
    let (status, text) = raw(
        api,
        b"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer not-the-token-at-all\r\n\
          Content-Type: application/json\r\nContent-Length: 1048576\r\n\r\n",
        Duration::from_secs(10),
    )?;

    // THEN it is answered 401 at once, without waiting for the body
    assert_eq!(status, 401, "{text}");
    ensure!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_answered_408() -> anyhow::Result<()> {
    // GIVEN a source that gives a body one second
    let (port, api) = (free_port()?, free_port()?);
    let dir = temp_dir("http-lim-slow")?;
    let input = topic(&unique("http-lim-slow"));
    let sluice = Sluice::start(
        &dir,
        &config(port, api, &input, "", "      readTimeoutMs: 1000\n"),
        port,
    )?;
    listening(api, &sluice).await?;

    // WHEN a client sends 10 of the 100 bytes it announced, and stalls
    let (status, text) = raw(
        api,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n[{\"n\":1},",
        Duration::from_secs(10),
    )?;

    // THEN it hears 408
    assert_eq!(status, 408, "{text}");
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn connections_past_the_limit_hold_no_descriptor_of_the_process() -> anyhow::Result<()> {
    // GIVEN a source that takes 8 connections at once
    let (port, api) = (free_port()?, free_port()?);
    let dir = temp_dir("http-lim-conns")?;
    let input = topic(&unique("http-lim-conns"));
    let sluice = Sluice::start(
        &dir,
        &config(port, api, &input, "", "      maxConnections: 8\n"),
        port,
    )?;
    listening(api, &sluice).await?;
    let before = settled(&sluice).await?;

    // WHEN 100 clients connect and send nothing (fewer than the listen
    // backlog, so that each connect completes)
    let idle: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(("127.0.0.1", api)))
        .collect::<Result<_, _>>()?;
    let during = settled(&sluice).await?;

    // THEN the process holds descriptors for 8 of them, not 100
    ensure!(
        during > before && during <= before + 8 + 3,
        "{during} descriptors open, {before} before"
    );
    // AND once they leave, a client is served
    drop(idle);
    let input_reader = reader(&input).await?;
    let (status, body) = post(api, "/", &[JSON], br#"{"n":1}"#);
    assert_eq!(status, 200, "{body}");
    ensure!(
        input_reader
            .receive_with_timeout(Duration::from_secs(10))
            .await?
            .is_some()
    );
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn silent_connections_give_way_to_a_client_with_a_request() -> anyhow::Result<()> {
    // GIVEN a source with a token that takes 4 connections at once and
    // gives headers a minute
    let (port, api) = (free_port()?, free_port()?);
    let dir = temp_dir("http-lim-silent")?;
    let input = topic(&unique("http-lim-silent"));
    let sluice = Sluice::start(
        &dir,
        &config(
            port,
            api,
            &input,
            "",
            &format!(
                "      authToken: {TOKEN}\n      maxConnections: 4\n      readTimeoutMs: 60000\n"
            ),
        ),
        port,
    )?;
    listening(api, &sluice).await?;

    // WHEN a stranger holds 50 connections open and sends nothing on them
    let silent: Vec<TcpStream> = (0..50)
        .map(|_| TcpStream::connect(("127.0.0.1", api)))
        .collect::<Result<_, _>>()?;

    // THEN a client with the token is answered within 20 s, long before
    // the silent ones' minute is up, while they are still open
    let bearer = format!("Bearer {TOKEN}");
    let (status, text) = raw(
        api,
        format!(
            "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: {bearer}\r\n\
             Content-Type: application/json\r\nContent-Length: 7\r\n\r\n{{\"n\":1}}"
        )
        .as_bytes(),
        Duration::from_secs(20),
    )?;
    assert_eq!(status, 200, "{text}");
    drop(silent);
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn a_length_announced_and_not_sent_holds_no_budget() -> anyhow::Result<()> {
    // GIVEN a source that holds 4 MiB for requests not yet answered
    let (port, api) = (free_port()?, free_port()?);
    let dir = temp_dir("http-lim-announce")?;
    let input = topic(&unique("http-lim-announce"));
    let sluice = Sluice::start(
        &dir,
        &config(
            port,
            api,
            &input,
            "",
            "      maxBodyBytes: 1048576\n      maxPendingBytes: 4194304\n",
        ),
        port,
    )?;
    listening(api, &sluice).await?;

    // WHEN eight clients announce 1 MiB each and send none of it
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(("127.0.0.1", api))?;
        s.write_all(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 1048576\r\n\r\n",
        )?;
        stalled.push(s);
    }

    // THEN a client that sends its body is served
    let (status, body) = post(api, "/", &[JSON], br#"{"n":1}"#);
    assert_eq!(status, 200, "{body}");
    drop(stalled);
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn an_array_is_charged_for_its_records_not_only_its_bytes() -> anyhow::Result<()> {
    // GIVEN a source that holds 4 MiB for requests not yet answered
    let (port, api) = (free_port()?, free_port()?);
    let dir = temp_dir("http-lim-records")?;
    let input = topic(&unique("http-lim-records"));
    let sluice = Sluice::start(
        &dir,
        &config(
            port,
            api,
            &input,
            "",
            "      maxBodyBytes: 1048576\n      maxPendingBytes: 4194304\n",
        ),
        port,
    )?;
    listening(api, &sluice).await?;

    // WHEN a client posts 512 KiB of one-digit records (262,144 of them,
    // 16 bytes of index each), and another 512 KiB in 64 records
    let tiny = format!("[{}1]", "1,".repeat(262_143));
    let (tiny_status, tiny_answer) = post(api, "/", &[JSON], tiny.as_bytes());
    let record = format!("{{\"v\":\"{}\"}}", "x".repeat(8180));
    let wide = format!("[{}]", vec![record; 64].join(","));
    let (wide_status, wide_answer) = post(api, "/", &[JSON], wide.as_bytes());

    // THEN the first is more than the budget holds (1 MiB for its bytes,
    // 4 MiB for its index) and is answered 503; the second is taken
    assert_eq!(tiny_status, 503, "{tiny_answer}");
    assert_eq!(wide_status, 200, "{wide_answer}");
    assert_eq!(wide_answer, "{\"records\":64}");
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn bodies_on_their_way_are_bounded_in_bytes() -> anyhow::Result<()> {
    // GIVEN a source that holds 4 MiB for requests not yet answered
    let (port, api) = (free_port()?, free_port()?);
    let dir = temp_dir("http-lim-bytes")?;
    let input = topic(&unique("http-lim-bytes"));
    let sluice = Sluice::start(
        &dir,
        &config(
            port,
            api,
            &input,
            "",
            "      maxBodyBytes: 1048576\n      maxPendingBytes: 4194304\n",
        ),
        port,
    )?;
    listening(api, &sluice).await?;

    // WHEN ten clients each announce 1 MiB, send 900 KB of it, and stall
    let part = vec![b' '; 900 * 1024];
    let mut clients = Vec::new();
    for _ in 0..10 {
        let mut s = TcpStream::connect(("127.0.0.1", api))?;
        s.set_read_timeout(Some(Duration::from_millis(200)))?;
        s.write_all(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 1048576\r\n\r\n",
        )?;
        // A refused client may be closed on before it has sent it all.
        let _ = s.write_all(&part);
        clients.push(s);
    }

    // THEN at most two hold what they sent (900 KB counts twice: 1.8 MB
    // each, and a third would pass the 4 MiB): the others are answered 503
    // as their bytes arrive (a third may hold part of its body, and which
    // clients are refused depends on how their bytes interleave)
    let mut refused = 0;
    for s in &mut clients {
        let mut buf = [0u8; 512];
        if let Ok(n) = s.read(&mut buf)
            && String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 503")
        {
            refused += 1;
        }
    }
    ensure!(refused >= 8, "{refused} of 10 refused");
    drop(clients);
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn a_json_array_of_one_mib_stays_under_ten_times_its_size_in_memory() -> anyhow::Result<()> {
    // GIVEN a source, warmed up by one small request
    let (port, api) = (free_port()?, free_port()?);
    let dir = temp_dir("http-lim-array")?;
    let input = topic(&unique("http-lim-array"));
    let sluice = Sluice::start(
        &dir,
        &config(port, api, &input, "", "      keyField: id\n"),
        port,
    )?;
    listening(api, &sluice).await?;
    assert_eq!(post(api, "/", &[JSON], br#"{"id":0}"#).0, 200);
    let before = sluice.peak_rss().context("no RSS")?;

    // WHEN a client posts an array of 1 MiB of small objects
    let mut body = String::from("[");
    let mut n = 0;
    while body.len() < (1 << 20) - 32 {
        if n > 0 {
            body.push(',');
        }
        body.push_str(&format!("{{\"id\":{n},\"v\":\"x\"}}"));
        n += 1;
    }
    body.push(']');
    let (status, answer) = post(api, "/", &[JSON], body.as_bytes());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, format!("{{\"records\":{n}}}"));

    // THEN the process's peak memory grew by less than 10 MiB
    let after = sluice.peak_rss().context("no RSS")?;
    let grown = after.saturating_sub(before);
    eprintln!("a 1 MiB array of {n} records: peak RSS {before} -> {after} (+{grown} bytes)");
    ensure!(grown < 10 << 20, "peak RSS grew by {grown} bytes");
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn json_numbers_reach_the_topic_exactly_as_sent() -> anyhow::Result<()> {
    let (port, api) = (free_port()?, free_port()?);
    let dir = temp_dir("http-lim-numbers")?;
    let input = topic(&unique("http-lim-numbers"));
    let topic_reader = reader(&input).await?;
    let sluice = Sluice::start(&dir, &config(port, api, &input, "", ""), port)?;
    listening(api, &sluice).await?;

    // WHEN a client posts numbers past what a double holds
    let sent = r#"[{"id": 12345678901234567890123, "r": 0.1000000000000000000001}]"#;
    assert_eq!(post(api, "/", &[JSON], sent.as_bytes()).0, 200);

    // THEN the record on the topic holds them digit for digit
    let msg = topic_reader
        .receive_with_timeout(Duration::from_secs(10))
        .await?
        .context("nothing on the topic")?;
    let (payload, _) = message_parts(&msg);
    assert_eq!(
        std::str::from_utf8(&payload)?,
        r#"{"id": 12345678901234567890123, "r": 0.1000000000000000000001}"#
    );
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn idempotency_keys_are_scoped_by_topic_and_forgotten_after_retention_while_running()
-> anyhow::Result<()> {
    // GIVEN an EFFECTIVELY_ONCE source with a named topic and a retention
    // of two seconds
    let name = unique("http-lim-keys");
    let (port, api) = (free_port()?, free_port()?);
    let dir = temp_dir(&name)?;
    let state = dir.join("state");
    std::fs::create_dir_all(&state)?;
    let input = topic(&name);
    let payments = format!("{name}-payments");
    let (main_reader, payments_reader) = (reader(&input).await?, reader(&topic(&payments)).await?);
    let sluice = Sluice::start(
        &dir,
        &config(
            port,
            api,
            &input,
            "    processingGuarantees: EFFECTIVELY_ONCE\n",
            &format!(
                "      stateDir: {}\n      topicsFromPath: [{payments}]\n\
                 \x20     idempotencyRetentionSeconds: 2\n",
                state.display()
            ),
        ),
        port,
    )?;
    listening(api, &sluice).await?;
    let keyed = |key: &'static str| [JSON, ("Idempotency-Key", key)];
    let _ = DEADLINE;

    // WHEN one key is sent to the source's topic and to the named one, with
    // different bodies
    assert_eq!(post(api, "/", &keyed("k1"), br#"{"order":1}"#).0, 200);
    let (status, text) = post(
        api,
        &format!("/topics/{payments}"),
        &keyed("k1"),
        br#"{"paid":1}"#,
    );
    // THEN both are taken and published, one on each topic
    assert_eq!(status, 200, "{text}");
    for (r, expected) in [
        (&main_reader, r#"{"order":1}"#),
        (&payments_reader, r#"{"paid":1}"#),
    ] {
        let msg = r
            .receive_with_timeout(Duration::from_secs(10))
            .await?
            .context("a record is missing")?;
        assert_eq!(std::str::from_utf8(&message_parts(&msg).0)?, expected);
    }

    // WHEN the retention passes and the key comes again with another body
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (status, text) = post(api, "/", &keyed("k1"), br#"{"order":2}"#);
    // THEN it is a new request, not a conflict with a forgotten one
    assert_eq!(status, 200, "{text}");
    // AND the journal, compacted while running, no longer holds the first
    let journal = std::fs::read_dir(&state)?
        .filter_map(Result::ok)
        .find(|e| e.path().extension().is_some_and(|x| x == "idempotency"))
        .context("no journal")?
        .path();
    // (a request lets the source compact: compaction runs as it reads)
    let mut compacted = false;
    for i in 0..20 {
        if !std::fs::read_to_string(&journal)?.contains(&payments) {
            compacted = true;
            break;
        }
        let key = format!("later-{i}");
        assert_eq!(
            post(
                api,
                "/",
                &[JSON, ("Idempotency-Key", &key)],
                br#"{"order":9}"#
            )
            .0,
            200
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    ensure!(
        compacted,
        "the journal still holds the expired key:\n{}",
        sluice.log()
    );
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn a_journal_torn_inside_a_character_still_lets_the_source_start() -> anyhow::Result<()> {
    // GIVEN an idempotency journal whose last line a crash cut inside a
    // two-byte character
    let name = unique("http-lim-torn");
    let (port, api) = (free_port()?, free_port()?);
    let dir = temp_dir(&name)?;
    let state = dir.join("state");
    std::fs::create_dir_all(&state)?;
    let mut torn = format!("given 3\n1 3 {} {} café", unix_seconds(), "d".repeat(64)).into_bytes();
    torn.pop();
    std::fs::write(state.join("public_default_api.idempotency"), torn)?;
    let input = topic(&name);

    // WHEN the source starts on it
    let sluice = Sluice::start(
        &dir,
        &config(
            port,
            api,
            &input,
            "    processingGuarantees: EFFECTIVELY_ONCE\n",
            &format!("      stateDir: {}\n", state.display()),
        ),
        port,
    )?;
    listening(api, &sluice).await?;

    // THEN it serves
    let (status, text) = post(
        api,
        "/",
        &[JSON, ("Idempotency-Key", "cafe")],
        br#"{"n":1}"#,
    );
    assert_eq!(status, 200, "{text}\n{}", sluice.log());
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The signature header a client makes, from the documented scheme, for a
/// request without an idempotency key.
fn sign(version: &str, path: &str, content_type: &str, body: &[u8]) -> String {
    sign_keyed(version, path, (content_type, ""), body)
}

/// [`sign`] for a request with an idempotency key (empty for none).
fn sign_keyed(version: &str, path: &str, (content_type, key): (&str, &str), body: &[u8]) -> String {
    let t = unix_seconds();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key");
    if version == "v1" {
        mac.update(format!("{t}.").as_bytes());
    } else {
        mac.update(format!("{t}\nPOST\n{path}\n{content_type}\n{key}\n").as_bytes());
    }
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},{version}={hex}")
}

#[tokio::test]
async fn a_signature_covers_the_path_the_content_type_and_the_idempotency_key() -> anyhow::Result<()>
{
    // GIVEN a source that takes signed requests to two named topics
    let name = unique("http-lim-sig");
    let (port, api) = (free_port()?, free_port()?);
    let dir = temp_dir(&name)?;
    let input = topic(&name);
    let sluice = Sluice::start(
        &dir,
        &config(
            port,
            api,
            &input,
            "",
            &format!("      signatureSecret: {SECRET}\n      topicsFromPath: [a, b]\n"),
        ),
        port,
    )?;
    listening(api, &sluice).await?;
    let body = br#"{"n":1}"#;
    let send = |path: &str, content_type: &str, signature: &str| {
        post(
            api,
            path,
            &[
                ("Content-Type", content_type),
                ("Sluice-Signature", signature),
            ],
            body,
        )
        .0
    };

    // THEN a request signed for its path and content type passes
    let for_a = sign("v2", "/topics/a", "application/json", body);
    assert_eq!(send("/topics/a", "application/json", &for_a), 200);
    // AND the same signature is refused on another path or content type
    assert_eq!(send("/topics/b", "application/json", &for_a), 401);
    assert_eq!(send("/topics/a", "application/x-ndjson+json", &for_a), 401);
    // AND the older form, over the body alone, is refused unless asked for
    let v1 = sign("v1", "", "", body);
    assert_eq!(send("/topics/b", "application/json", &v1), 401);
    // AND a request signed with its idempotency key passes, and its
    // signature is refused under another key (a replay as a new request)
    let keyed = |key: &str, signature: &str| {
        post(
            api,
            "/topics/a",
            &[
                ("Content-Type", "application/json"),
                ("Idempotency-Key", key),
                ("Sluice-Signature", signature),
            ],
            body,
        )
        .0
    };
    let for_key = sign_keyed("v2", "/topics/a", ("application/json", "order-1"), body);
    assert_eq!(keyed("order-1", &for_key), 200);
    assert_eq!(keyed("order-2", &for_key), 401);
    ensure!(sluice.interrupt().await?.success());
    Ok(())
}

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::config::ConfigValue;

fn config(pairs: &[(&str, &str)]) -> HttpSourceConfig {
    let mut map: ConfigMap = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), ConfigValue::String((*v).to_owned())))
        .collect();
    map.insert("port".into(), ConfigValue::Int(0));
    HttpSourceConfig::from_configs(&map).0.unwrap()
}

/// POST over a plain socket, as any client would: the status and body.
async fn post(
    addr: std::net::SocketAddr,
    path: &str,
    headers: impl AsRef<str>,
    body: &str,
) -> (u16, String) {
    let headers = headers.as_ref();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let status = text[9..12].parse().unwrap();
    (status, text)
}

const JSON: &str = "Content-Type: application/json\r\n";

async fn until(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "waited for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_request_is_answered_when_durable_and_a_full_queue_pushes_back() {
    let mut source = HttpSource::open(
        config(&[("maxPendingRequests", "1")]),
        &SourceContext::default(),
    )
    .await
    .unwrap();
    let addr = source.local_addr;

    // A request fills the queue; the next is told to come back.
    let first = tokio::spawn(post(addr, "/orders", JSON, r#"[{"n":1},{"n":2}]"#));
    until("the first request to queue", || source.requests.len() == 1).await;
    let (status, text) = post(addr, "/orders", JSON, r#"{"n":3}"#).await;
    assert_eq!(status, 503, "{text}");
    assert!(
        text.to_ascii_lowercase().contains("retry-after: 1"),
        "{text}"
    );

    // The runtime takes the first request's records...
    let batch = source.read().await.unwrap().unwrap();
    assert_eq!(batch.records.len(), 2);
    assert_eq!(batch.records[1].value.as_deref(), Some(&br#"{"n":2}"#[..]));
    assert!(
        !first.is_finished(),
        "answered before its records were durable"
    );
    // ...and once they are durable the client hears 200.
    source
        .committer()
        .commit(batch.checkpoint.unwrap())
        .await
        .unwrap();
    let (status, text) = first.await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with(r#"{"records":2}"#), "{text}");
    source.close().await;
}

#[tokio::test]
async fn a_source_that_stops_tells_waiting_clients_to_send_again() {
    let mut source = HttpSource::open(config(&[]), &SourceContext::default())
        .await
        .unwrap();
    let addr = source.local_addr;
    let waiting = tokio::spawn(post(addr, "/", JSON, r#"{"n":1}"#));
    let batch = source.read().await.unwrap().unwrap();
    assert_eq!(batch.records.len(), 1);
    // The publish fails and the runtime closes the source.
    source.close().await;
    let (status, text) = waiting.await.unwrap();
    assert_eq!(status, 503, "{text}");
}

#[tokio::test]
async fn bad_requests_get_their_4xx() {
    let token = "a-token-of-some-length";
    let mut source = HttpSource::open(
        config(&[
            ("authToken", token),
            ("topicsFromPath", "orders"),
            ("maxBodyBytes", "1000"),
        ]),
        &SourceContext::default(),
    )
    .await
    .unwrap();
    let addr = source.local_addr;
    let auth = format!("Authorization: Bearer {token}\r\n");
    let with = |h: &str| format!("{auth}{h}");
    assert_eq!(post(addr, "/", JSON, "{}").await.0, 401, "no token");
    let wrong =
        "Authorization: Bearer a-token-of-some-lengtH\r\nContent-Type: application/json\r\n";
    assert_eq!(post(addr, "/", wrong, "{}").await.0, 401, "a wrong token");
    assert_eq!(post(addr, "/", &auth, "{}").await.0, 415, "no content type");
    assert_eq!(post(addr, "/", &with(JSON), "{\"a\":").await.0, 400);
    assert_eq!(post(addr, "/", &with(JSON), "[]").await.0, 400);
    assert_eq!(
        post(addr, "/topics/payments", &with(JSON), "{}").await.0,
        404,
        "a topic not on the list"
    );
    let big = format!("{{\"x\":\"{}\"}}", "y".repeat(2000));
    assert_eq!(post(addr, "/", &with(JSON), &big).await.0, 413);
    // A good one, to a listed topic, goes through.
    let headers = with(JSON);
    let good =
        tokio::spawn(async move { post(addr, "/topics/orders", &headers, "{\"n\":1}").await });
    let batch = source.read().await.unwrap().unwrap();
    assert_eq!(batch.records[0].topic.as_deref(), Some("orders"));
    source
        .committer()
        .commit(batch.checkpoint.unwrap())
        .await
        .unwrap();
    assert_eq!(good.await.unwrap().0, 200);
    source.close().await;
}

#[tokio::test]
async fn a_retried_key_is_published_once_across_restarts() {
    let dir = std::env::temp_dir().join(format!("sluice-http-eo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.display().to_string();
    let eo = |published: Option<u64>| SourceContext {
        name: "public/default/orders-api".into(),
        guarantee: Guarantee::EffectivelyOnce,
        published: published.map(|p| Sequence(u128::from(p))),
        ..SourceContext::default()
    };
    let keyed = |key: &str| format!("{JSON}Idempotency-Key: {key}\r\n");
    let mut source = HttpSource::open(config(&[("stateDir", &state)]), &eo(None))
        .await
        .unwrap();
    let addr = source.local_addr;

    // The first request with a key is published with sequences 1 and 2.
    let first = tokio::spawn(post(addr, "/", JSON_KEYED_A, r#"[{"n":1},{"n":2}]"#));
    let batch = source.read().await.unwrap().unwrap();
    let seqs: Vec<_> = batch.records.iter().map(|r| r.sequence).collect();
    assert_eq!(seqs, [Some(Sequence(1)), Some(Sequence(2))]);
    // A retry while it is on its way waits with it.
    let retry = tokio::spawn(post(addr, "/", JSON_KEYED_A, r#"[{"n":1},{"n":2}]"#));
    until("the retry to wait", || {
        source.shared.keys.as_ref().is_some_and(|k| {
            k.lock().is_ok_and(|k| {
                matches!(k.get("\ta"), Some(KeyState::Pending { waiters, .. }) if waiters.len() == 1)
            })
        })
    })
    .await;
    source
        .committer()
        .commit(batch.checkpoint.unwrap())
        .await
        .unwrap();
    assert_eq!(first.await.unwrap().0, 200);
    assert_eq!(retry.await.unwrap().0, 200);
    // A later retry is answered at once, and the key with another body refused.
    let (status, text) = post(addr, "/", JSON_KEYED_A, r#"[{"n":1},{"n":2}]"#).await;
    assert_eq!(status, 200);
    assert!(text.contains("idempotent-replayed: true"), "{text}");
    assert_eq!(post(addr, "/", &keyed("a"), r#"{"n":3}"#).await.0, 422);
    assert_eq!(source.requests.len(), 0, "nothing more was queued");
    source.close().await;

    // After a restart where the runtime published up to 2, a retry of
    // "a" is answered without publishing.
    let mut source = HttpSource::open(config(&[("stateDir", &state)]), &eo(Some(2)))
        .await
        .unwrap();
    let addr = source.local_addr;
    assert_eq!(
        post(addr, "/", JSON_KEYED_A, r#"[{"n":1},{"n":2}]"#)
            .await
            .0,
        200
    );
    // A new key goes on from the next sequence.
    let new = tokio::spawn(post(addr, "/", keyed("b"), r#"{"n":4}"#));
    let batch = source.read().await.unwrap().unwrap();
    assert_eq!(batch.records[0].sequence, Some(Sequence(3)));
    source.close().await;
    assert_eq!(new.await.unwrap().0, 503, "closed before it was durable");

    // After a restart where "b" (sequence 3) was not published, its
    // retry is published again, under a new sequence.
    let mut source = HttpSource::open(config(&[("stateDir", &state)]), &eo(Some(2)))
        .await
        .unwrap();
    let addr = source.local_addr;
    let again = tokio::spawn(post(addr, "/", keyed("b"), r#"{"n":4}"#));
    let batch = source.read().await.unwrap().unwrap();
    assert_eq!(batch.records[0].sequence, Some(Sequence(4)));
    source
        .committer()
        .commit(batch.checkpoint.unwrap())
        .await
        .unwrap();
    assert_eq!(again.await.unwrap().0, 200);
    source.close().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

const JSON_KEYED_A: &str = "Content-Type: application/json\r\nIdempotency-Key: a\r\n";

#[tokio::test]
async fn a_large_request_goes_out_in_batches_of_batch_size_as_one_unit() {
    let context = |guarantee| SourceContext {
        guarantee,
        ..SourceContext::default()
    };
    for guarantee in [Guarantee::AtLeastOnce, Guarantee::EffectivelyOnce] {
        let dir = std::env::temp_dir().join(format!("sluice-http-split-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let state = dir.display().to_string();
        let mut source = HttpSource::open(
            config(&[("batchSize", "500"), ("stateDir", &state)]),
            &context(guarantee),
        )
        .await
        .unwrap();
        let addr = source.local_addr;
        // GIVEN a request of 1,200 records, then one of 2
        let big: Vec<String> = (0..1200).map(|i| format!("{{\"n\":{i}}}")).collect();
        let big = format!("[{}]", big.join(","));
        let first = tokio::spawn(post(addr, "/", JSON, big.leak()));
        until("the first request to queue", || source.requests.len() == 1).await;
        let second = tokio::spawn(post(addr, "/", JSON, r#"[{"n":"a"},{"n":"b"}]"#));
        until("the second request to queue", || source.requests.len() == 2).await;
        // WHEN the runtime reads
        let mut batches = Vec::new();
        for _ in 0..3 {
            batches.push(source.read().await.unwrap().unwrap());
        }
        // THEN the large one comes in three batches, its position only
        // on the last, which the small one joins whole
        let sizes: Vec<usize> = batches.iter().map(|b| b.records.len()).collect();
        assert_eq!(sizes, [500, 500, 202], "{guarantee:?}");
        let checkpoints: Vec<bool> = batches.iter().map(|b| b.checkpoint.is_some()).collect();
        assert_eq!(checkpoints, [false, false, true], "{guarantee:?}");
        assert_eq!(
            batches[2].records[199].value.as_deref(),
            Some(&br#"{"n":1199}"#[..])
        );
        assert_eq!(
            batches[2].records[201].value.as_deref(),
            Some(&br#"{"n":"b"}"#[..])
        );
        assert!(!first.is_finished());
        source
            .committer()
            .commit(batches[2].checkpoint.unwrap())
            .await
            .unwrap();
        assert_eq!(first.await.unwrap().0, 200);
        assert_eq!(second.await.unwrap().0, 200);
        source.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// A CA and a certificate for 127.0.0.1 it signed, made with openssl
/// in `dir`: (CA, certificate, key).
fn certificates(dir: &std::path::Path) -> (String, String, String) {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &[
                "req",
                "-x509",
                "-days",
                "1",
                "-subj",
                "/CN=test-ca",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ][..],
            &ec[..],
        ]
        .concat(),
    );
    openssl(
        &[
            &[
                "req",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "key.pem",
                "-out",
                "leaf.csr",
            ][..],
            &ec[..],
        ]
        .concat(),
    );
    std::fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "ext",
        "-out",
        "cert.pem",
    ]);
    let path = |f: &str| dir.join(f).display().to_string();
    (path("ca.pem"), path("cert.pem"), path("key.pem"))
}

#[tokio::test]
async fn with_a_certificate_requests_are_taken_over_tls_only() {
    use rustls::pki_types::pem::PemObject;

    let dir = std::env::temp_dir().join(format!("sluice-http-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = certificates(&dir);
    let mut source = HttpSource::open(
        config(&[("tlsCertFile", &cert), ("tlsKeyFile", &key)]),
        &SourceContext::default(),
    )
    .await
    .unwrap();
    let addr = source.local_addr;

    // A client that trusts the CA posts over TLS.
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(&ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let client = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let posted = tokio::spawn(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let body = r#"{"n":1}"#;
        let request = format!(
            "POST / HTTP/1.1\r\nHost: test\r\n{JSON}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut text = String::new();
        let _ = tls.read_to_string(&mut text).await;
        text
    });
    let batch = source.read().await.unwrap().unwrap();
    assert_eq!(batch.records[0].value.as_deref(), Some(&br#"{"n":1}"#[..]));
    source
        .committer()
        .commit(batch.checkpoint.unwrap())
        .await
        .unwrap();
    let text = posted.await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");

    // Plain HTTP gets no answer.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    let _ = plain.read_to_string(&mut answer).await;
    assert!(!answer.contains("HTTP/1.1"), "{answer}");
    source.close().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn with_a_signature_secret_only_signed_recent_requests_pass() {
    let secret = "a-shared-secret-of-some-length";
    let mut source = HttpSource::open(
        config(&[
            ("signatureSecret", secret),
            ("signatureToleranceSeconds", "60"),
        ]),
        &SourceContext::default(),
    )
    .await
    .unwrap();
    let addr = source.local_addr;
    let body = r#"{"n":1}"#;
    let signed = |at: u64, body: &str| {
        let request = crate::signature::Signed {
            method: "POST",
            path: "/",
            content_type: "application/json",
            idempotency_key: "",
            body: body.as_bytes(),
        };
        let value = crate::signature::sign(
            secret.as_bytes(),
            crate::signature::Version::V2,
            at,
            &request,
        );
        format!("{JSON}Sluice-Signature: {value}\r\n")
    };
    let now = unix_seconds();
    assert_eq!(post(addr, "/", JSON, body).await.0, 401, "unsigned");
    assert_eq!(
        post(addr, "/", signed(now, "{}"), body).await.0,
        401,
        "another body's"
    );
    assert_eq!(
        post(addr, "/", signed(now - 600, body), body).await.0,
        401,
        "too old"
    );
    let good = tokio::spawn(post(addr, "/", signed(now, body), body));
    let batch = source.read().await.unwrap().unwrap();
    source
        .committer()
        .commit(batch.checkpoint.unwrap())
        .await
        .unwrap();
    assert_eq!(good.await.unwrap().0, 200);
    source.close().await;
}

#[tokio::test]
async fn a_client_hears_200_while_the_next_read_waits_for_requests() {
    let mut source = HttpSource::open(config(&[]), &SourceContext::default())
        .await
        .unwrap();
    let addr = source.local_addr;
    let committer = source.committer();
    let first = tokio::spawn(post(addr, "/", JSON, r#"{"n":1}"#));
    let batch = source.read().await.unwrap().unwrap();
    // The next read waits for a request; meanwhile the first batch becomes
    // durable, and its client hears 200 before any other request comes.
    let (next, answered) = tokio::join!(source.read(), async {
        committer.commit(batch.checkpoint.unwrap()).await.unwrap();
        let answered = first.await.unwrap();
        let second = tokio::spawn(post(addr, "/", JSON, r#"{"n":2}"#));
        (answered, second)
    });
    let ((status, text), second) = answered;
    assert_eq!(status, 200, "{text}");
    let next = next.unwrap().unwrap();
    assert_eq!(next.records[0].value.as_deref(), Some(&br#"{"n":2}"#[..]));
    committer.commit(next.checkpoint.unwrap()).await.unwrap();
    assert_eq!(second.await.unwrap().0, 200);
    source.close().await;
}

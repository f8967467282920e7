//! Settings that could quietly weaken security: the JDBC drivers' TLS
//! switches mean what they mean to those drivers, a URL parameter sluice
//! does not take is refused by name and never logged with its value,
//! credentials do not cross plain HTTP unless a key says so, secret files
//! readable by others are warned about, and `tlsAllowInsecureConnection`
//! names every connection it weakens. Run through the `sluice` binary,
//! against the stack's TLS databases and broker.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use anyhow::ensure;
use sluice_tests::sink::{sink_section, sinks_config};
use sluice_tests::{PULSAR_URL, free_port, mariadb, pg, sluice_binary, temp_dir, unique};

/// `sluice <verb> --config <path>`: the exit code, and what it printed.
fn sluice(verb: &str, path: &Path) -> anyhow::Result<(Option<i32>, String)> {
    let out = std::process::Command::new(sluice_binary()?)
        .args([verb, "--config"])
        .arg(path)
        .env("NO_COLOR", "1")
        .output()?;
    Ok((
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

fn write(dir: &Path, file: &str, text: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join(file);
    std::fs::write(&path, text)?;
    Ok(path)
}

#[tokio::test]
async fn the_drivers_tls_switches_never_mean_less_tls_than_asked() -> anyhow::Result<()> {
    // GIVEN a Postgres and a MariaDB target that serve TLS with the stack's
    // own CA, which the system does not trust
    let name = unique("jdbc-switches").replace('-', "_");
    pg::create_database(&name)
        .await?
        .batch_execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
        .await?;
    let maria = mariadb::create_database(&name).await?;
    sqlx::raw_sql("CREATE TABLE items (id INT PRIMARY KEY, v TEXT)")
        .execute(&maria)
        .await?;
    let dir = temp_dir(&name)?;
    let topic = sluice_tests::topic(&name);
    let configs = "      tableName: items\n";
    let check = |pg_url: &str, maria_url: &str| -> anyhow::Result<(Option<i32>, String)> {
        let config = sinks_config(
            free_port()?,
            &[
                sink_section("pg", &topic, pg_url, "", configs),
                sink_section("maria", &topic, maria_url, "", configs),
            ],
        );
        sluice("check", &write(&dir, "check.yaml", &config)?)
    };

    // WHEN the sinks ask for verified TLS the drivers' older ways: pgjdbc's
    // ssl=true, Connector/J's useSSL, requireSSL and verifyServerCertificate
    let pg_url = format!(
        "jdbc:postgresql://localhost:5432/{name}?user=postgres&password={}&ssl=true",
        pg::PASSWORD
    );
    let maria_url = format!(
        "jdbc:mysql://localhost:3306/{name}?user=sluice&password=sluice&useSSL=true&requireSSL=true&verifyServerCertificate=true"
    );
    let (code, text) = check(&pg_url, &maria_url)?;

    // THEN both verify the certificates, and refuse the unknown CA
    assert_eq!(code, Some(1), "{text}");
    for sink in ["pg", "maria"] {
        ensure!(
            text.lines()
                .any(|l| l.starts_with(&format!("error {sink}:"))
                    && l.to_lowercase().contains("cert")),
            "{sink} did not refuse the certificate:\n{text}"
        );
    }

    // AND given the CA, they connect
    let ca = pg::ca();
    let (code, text) = check(
        &format!("{pg_url}&sslrootcert={}", ca.display()),
        &format!("{maria_url}&serverSslCert={}", ca.display()),
    )?;
    ensure!(
        !text.contains("error pg:") && !text.contains("error maria:"),
        "{code:?}\n{text}"
    );
    Ok(())
}

#[tokio::test]
async fn a_url_parameter_sluice_does_not_take_is_refused_by_name_and_its_value_never_shown()
-> anyhow::Result<()> {
    let dir = temp_dir("jdbc-unknown-param")?;
    let topic = sluice_tests::topic("unknown-param");
    for url in [
        "jdbc:postgresql://127.0.0.1:5432/x?user=postgres&tcpKeepAlive=s3cr3t-value",
        "jdbc:mysql://127.0.0.1:3306/x?serverTimezone=s3cr3t-value",
    ] {
        let config = sinks_config(free_port()?, &[sink_section("s", &topic, url, "", "")]);
        let (code, text) = sluice("validate", &write(&dir, "p.yaml", &config)?)?;
        assert_eq!(code, Some(2), "{url}: {text}");
        let param = if url.contains("tcpKeepAlive") {
            "tcpKeepAlive"
        } else {
            "serverTimezone"
        };
        ensure!(
            text.contains(&format!("the parameter {param} is not one sluice takes")),
            "{text}"
        );
        ensure!(
            !text.contains("s3cr3t-value"),
            "the value is shown:\n{text}"
        );
    }
    Ok(())
}

/// A pipeline of one file sink with these `pulsar:` lines.
fn pulsar_only(dir: &Path, pulsar: &str) -> anyhow::Result<std::path::PathBuf> {
    let config = format!(
        "pulsar:\n{pulsar}sinks:\n  - name: out\n    className: file\n    inputs: [t]\n    configs:\n      path: {}\n",
        dir.join("out.jsonl").display()
    );
    write(dir, "pipeline.yaml", &config)
}

#[tokio::test]
async fn credentials_never_cross_plain_http_unless_a_key_says_so() -> anyhow::Result<()> {
    let dir = temp_dir("plain-http-credentials")?;
    let creds = write(
        &dir,
        "creds.json",
        r#"{"client_id":"a","client_secret":"b"}"#,
    )?;
    let cases = [
        (
            "  serviceUrl: pulsar+ssl://localhost:6651\n  webServiceUrl: http://localhost:8080\n  authToken: a.b.c\n",
            Some("pulsar.webServiceUrl"),
        ),
        (
            "  serviceUrl: pulsar+ssl://localhost:6651\n  webServiceUrl: http://localhost:8080\n  authToken: a.b.c\n  sendCredentialsOverPlainHttp: true\n",
            None,
        ),
        (
            &*format!(
                "  serviceUrl: pulsar+ssl://localhost:6651\n  authPlugin: org.apache.pulsar.client.impl.auth.oauth2.AuthenticationOAuth2\n  authParams: '{{\"issuerUrl\":\"http://issuer.example\",\"privateKey\":\"file://{}\",\"audience\":\"a\"}}'\n",
                creds.display()
            ),
            Some("issuerUrl http://issuer.example is plain HTTP"),
        ),
        (
            "  serviceUrl: pulsar+ssl://localhost:6651\n  webServiceUrl: https://localhost:8443\n  authToken: a.b.c\n",
            None,
        ),
    ];
    for (pulsar, refused) in cases {
        let (code, text) = sluice("validate", &pulsar_only(&dir, pulsar)?)?;
        match refused {
            Some(why) => {
                assert_eq!(code, Some(2), "{pulsar}\n{text}");
                ensure!(text.contains(why), "{pulsar}\n{text}");
            }
            None => assert_eq!(code, Some(0), "{pulsar}\n{text}"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_secret_file_others_may_read_is_warned_about() -> anyhow::Result<()> {
    // GIVEN a token file anyone on the machine may read
    let dir = temp_dir("open-token-file")?;
    let token = write(&dir, "token.jwt", "a.b.c")?;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644))?;
    let path = pulsar_only(
        &dir,
        &format!(
            "  serviceUrl: {PULSAR_URL}\n  authPlugin: org.apache.pulsar.client.impl.auth.AuthenticationToken\n  authParams: file://{}\n",
            token.display()
        ),
    )?;
    // THEN check warns, naming the file and what to do
    let (_, text) = sluice("check", &path)?;
    ensure!(
        text.contains("may be read by others than its owner (mode 0644)")
            && text.contains(&format!("chmod 600 {}", token.display())),
        "{text}"
    );
    // AND not once only its owner may read it
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600))?;
    let (_, text) = sluice("check", &path)?;
    ensure!(!text.contains("may be read by others"), "{text}");
    Ok(())
}

#[tokio::test]
async fn tls_allow_insecure_connection_names_every_connection_it_weakens() -> anyhow::Result<()> {
    let dir = temp_dir("insecure-names")?;
    let creds = write(
        &dir,
        "creds.json",
        r#"{"client_id":"a","client_secret":"b"}"#,
    )?;
    let (_, text) = sluice(
        "validate",
        &pulsar_only(
            &dir,
            &format!(
                "  serviceUrl: pulsar+ssl://localhost:6651\n  webServiceUrl: https://localhost:8443\n  tlsAllowInsecureConnection: true\n  authPlugin: org.apache.pulsar.client.impl.auth.oauth2.AuthenticationOAuth2\n  authParams: '{{\"issuerUrl\":\"https://issuer.example\",\"privateKey\":\"file://{}\",\"audience\":\"a\"}}'\n",
                creds.display()
            ),
        )?,
    )?;
    for connection in [
        "the broker (pulsar+ssl://localhost:6651)",
        "the admin API (https://localhost:8443)",
        "the OAuth2 issuer (https://issuer.example)",
    ] {
        ensure!(
            text.contains(connection),
            "{connection} is not named:\n{text}"
        );
    }
    Ok(())
}

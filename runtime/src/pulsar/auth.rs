//! Credentials for every connection to the cluster: the broker's binary
//! protocol, the transaction coordinator and the admin REST API. One
//! [`Credentials`] per client hands out the current token to each of them;
//! under OAuth2 a task exchanges the client credentials for a new token
//! before the current one expires.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use magnetar::proto::{AuthError, AuthProvider};
use sluice_connectors::Secret;
use tracing::{info, warn};

use super::PulsarError;
use super::tls::{self, Identity};
use crate::config::{OAuth2Settings, PulsarAuth, PulsarSettings, TokenSource};

/// What authenticates a client's connections.
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    None,
    Token(TokenSource),
    OAuth2(Arc<OAuth2>),
    /// A client certificate, presented in the TLS handshake.
    Certificate(Arc<Identity>),
}

impl Credentials {
    /// Ready credentials: under OAuth2, a first token is fetched now (an
    /// error names the issuer), and a task keeps it fresh while the
    /// credentials live.
    pub(crate) async fn open(settings: &PulsarSettings) -> Result<Self, PulsarError> {
        let kind = match &settings.auth {
            PulsarAuth::None => Kind::None,
            PulsarAuth::Token(source) => {
                let token = match source {
                    TokenSource::File(path) => {
                        read_token(path).map_err(|e| PulsarError::config("read the token", e))?
                    }
                    TokenSource::Value(token) => token.clone(),
                };
                renew_at(token.expose(), Instant::now(), std::time::SystemTime::now())
                    .map_err(|e| PulsarError::config("read the token", e))?;
                Kind::Token(source.clone())
            }
            PulsarAuth::OAuth2(oauth) => {
                Kind::OAuth2(OAuth2::start(oauth.clone(), tls::http_agent(settings, None)?).await?)
            }
            PulsarAuth::Tls { cert, key } => {
                Kind::Certificate(Arc::new(Identity::load(cert, key)?))
            }
        };
        Ok(Self { kind })
    }

    /// The provider for the binary protocol; `None` when anonymous.
    pub(crate) fn provider(&self) -> Option<Arc<dyn AuthProvider>> {
        match &self.kind {
            Kind::None => None,
            Kind::Token(_) | Kind::OAuth2(_) => Some(Arc::new(self.clone())),
            Kind::Certificate(_) => Some(Arc::new(CertificateAuth)),
        }
    }

    /// The client certificate, under `AuthenticationTls`.
    pub(crate) fn identity(&self) -> Option<&Identity> {
        match &self.kind {
            Kind::Certificate(identity) => Some(identity),
            _ => None,
        }
    }

    /// When a client built now should reconnect to renew its token.
    pub(crate) fn renew_at(&self) -> Option<Instant> {
        let token = self.token().ok()?;
        renew_at(token.expose(), Instant::now(), std::time::SystemTime::now()).unwrap_or_else(|e| {
            warn!(error = %e, "the token will not be renewed before it expires");
            None
        })
    }

    /// The current token, for an `Authorization: Bearer` header.
    pub(crate) fn bearer(&self) -> Result<Option<Secret>, PulsarError> {
        match &self.kind {
            Kind::None | Kind::Certificate(_) => Ok(None),
            Kind::Token(_) | Kind::OAuth2(_) => self
                .token()
                .map(Some)
                .map_err(|e| PulsarError::config("authenticate", e)),
        }
    }

    fn token(&self) -> Result<Secret, String> {
        match &self.kind {
            Kind::None | Kind::Certificate(_) => Err("no token".to_owned()),
            Kind::Token(TokenSource::Value(secret)) => Ok(secret.clone()),
            Kind::Token(TokenSource::File(path)) => read_token(path),
            Kind::OAuth2(oauth) => oauth.current(),
        }
    }
}

impl AuthProvider for Credentials {
    fn method(&self) -> &str {
        // The broker's token provider takes both a plain and an OAuth2 JWT.
        "token"
    }

    fn initial(&self) -> Result<Bytes, AuthError> {
        self.token()
            .map(|t| Bytes::copy_from_slice(t.expose().as_bytes()))
            .map_err(AuthError::Invalid)
    }
}

/// Authentication by the client certificate of the TLS handshake: the
/// broker's TLS provider reads the role from it, so the connect command
/// names the method and carries no data.
#[derive(Debug)]
struct CertificateAuth;

impl AuthProvider for CertificateAuth {
    fn method(&self) -> &str {
        "tls"
    }

    fn initial(&self) -> Result<Bytes, AuthError> {
        Ok(Bytes::new())
    }
}

/// The longest a token may live: an `exp` or `expires_in` past it is not a
/// time sluice can plan a renewal around, and is refused.
const MAX_LIFETIME: Duration = Duration::from_secs(100 * 366 * 86_400);

/// When a client that connected `now` with `token` should reconnect with
/// a fresh one: at four fifths of the time left until the JWT's `exp`.
/// `None` for a token that does not expire (or is not a JWT, or has
/// expired: the broker refuses it anyway). An `exp` further than
/// [`MAX_LIFETIME`] away is an error, not an overflow.
pub(crate) fn renew_at(
    token: &str,
    now: Instant,
    wall: std::time::SystemTime,
) -> Result<Option<Instant>, String> {
    use base64::Engine as _;
    let Some(claims) = token.split('.').nth(1).and_then(|c| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(c.trim_end_matches('='))
            .ok()
    }) else {
        return Ok(None);
    };
    let Ok(claims) = serde_json::from_slice::<serde_json::Value>(&claims) else {
        return Ok(None);
    };
    let exp = match &claims["exp"] {
        serde_json::Value::Null => return Ok(None),
        serde_json::Value::Number(n) => n.as_u64(),
        _ => None,
    };
    let too_far = || {
        format!(
            "the token's exp claim ({}) is not a time within {} years",
            claims["exp"],
            MAX_LIFETIME.as_secs() / 31_622_400
        )
    };
    let exp = exp
        .map(Duration::from_secs)
        .and_then(|exp| std::time::UNIX_EPOCH.checked_add(exp))
        .ok_or_else(too_far)?;
    let Ok(left) = exp.duration_since(wall) else {
        return Ok(None);
    };
    if left > MAX_LIFETIME {
        return Err(too_far());
    }
    Ok(now.checked_add(left / 5 * 4))
}

/// A token file's content. The file is read on each use, so a rotated
/// token is picked up at the next connection or re-authentication.
fn read_token(path: &Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("the token file {} is empty", path.display()));
    }
    Ok(Secret::new(token))
}

/// OAuth2 client credentials and the token they were last exchanged for.
#[derive(Debug)]
struct OAuth2 {
    settings: OAuth2Settings,
    agent: ureq::Agent,
    /// The token and when it expires.
    current: Mutex<(Secret, Instant)>,
    refresher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for OAuth2 {
    fn drop(&mut self) {
        if let Ok(mut r) = self.refresher.lock()
            && let Some(task) = r.take()
        {
            task.abort();
        }
    }
}

/// A token from the issuer, and how long it lives.
struct Grant {
    token: Secret,
    lifetime: Duration,
}

impl OAuth2 {
    async fn start(settings: OAuth2Settings, agent: ureq::Agent) -> Result<Arc<Self>, PulsarError> {
        let context = format!("get an OAuth2 token from {}", settings.issuer_url);
        let grant = fetch(settings.clone(), agent.clone())
            .await
            .map_err(|e| PulsarError::config(context.clone(), e))?;
        info!(issuer = %settings.issuer_url, lifetime = ?grant.lifetime, "got an OAuth2 token");
        let this = Arc::new(Self {
            settings,
            agent,
            current: Mutex::new((grant.token, Instant::now() + grant.lifetime)),
            refresher: Mutex::new(None),
        });
        let weak = Arc::downgrade(&this);
        let task = tokio::spawn(async move {
            let mut wait = refresh_after(grant.lifetime);
            loop {
                tokio::time::sleep(wait).await;
                let Some(this) = weak.upgrade() else { return };
                match fetch(this.settings.clone(), this.agent.clone()).await {
                    Ok(grant) => {
                        wait = refresh_after(grant.lifetime);
                        if let Ok(mut current) = this.current.lock() {
                            *current = (grant.token, Instant::now() + grant.lifetime);
                        }
                    }
                    Err(e) => {
                        // Try again soon: the current token may still be valid.
                        wait = Duration::from_secs(5);
                        warn!(issuer = %this.settings.issuer_url, error = %e, "could not refresh the OAuth2 token; trying again in 5 s");
                    }
                }
            }
        });
        if let Ok(mut r) = this.refresher.lock() {
            *r = Some(task);
        }
        Ok(this)
    }

    fn current(&self) -> Result<Secret, String> {
        let current = self
            .current
            .lock()
            .map_err(|_| "the OAuth2 token is unavailable".to_owned())?;
        Ok(current.0.clone())
    }
}

/// When to fetch a new token: at three quarters of its life, so that a
/// connection opened or challenged just before then still gets a token
/// with a quarter of its life left.
fn refresh_after(lifetime: Duration) -> Duration {
    (lifetime * 3 / 4).max(Duration::from_secs(1))
}

/// The client-credentials grant: find the token endpoint from the issuer's
/// metadata, then exchange the credentials for a token.
async fn fetch(settings: OAuth2Settings, agent: ureq::Agent) -> Result<Grant, String> {
    tokio::task::spawn_blocking(move || fetch_blocking(&settings, &agent))
        .await
        .map_err(|e| e.to_string())?
}

fn fetch_blocking(settings: &OAuth2Settings, agent: &ureq::Agent) -> Result<Grant, String> {
    let credentials = read_credentials(&settings.private_key)?;
    let metadata_url = format!(
        "{}/.well-known/openid-configuration",
        settings.issuer_url.trim_end_matches('/')
    );
    let metadata = get_json(agent.get(&metadata_url).call(), &metadata_url)?;
    let endpoint = metadata["token_endpoint"]
        .as_str()
        .ok_or_else(|| format!("{metadata_url} names no token_endpoint"))?
        .to_owned();
    let mut form: Vec<(&str, &str)> = vec![
        ("grant_type", "client_credentials"),
        ("client_id", &credentials.0),
        ("client_secret", credentials.1.expose()),
    ];
    if let Some(a) = &settings.audience {
        form.push(("audience", a));
    }
    if let Some(s) = &settings.scope {
        form.push(("scope", s));
    }
    let answer = get_json(agent.post(&endpoint).send_form(form), &endpoint)?;
    let token = answer["access_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| format!("{endpoint} answered without an access_token"))?;
    let lifetime = match &answer["expires_in"] {
        serde_json::Value::Null => Duration::from_secs(3600),
        value => value
            .as_u64()
            .map(Duration::from_secs)
            .filter(|l| *l <= MAX_LIFETIME)
            .ok_or_else(|| {
                format!(
                    "{endpoint} answered expires_in {value}, not a number of seconds within {} years",
                    MAX_LIFETIME.as_secs() / 31_622_400
                )
            })?,
    };
    Ok(Grant {
        token: Secret::new(token),
        lifetime,
    })
}

/// A JSON answer, or an error that gives the status and the server's
/// `error` field, never the request's secrets.
fn get_json(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    url: &str,
) -> Result<serde_json::Value, String> {
    let mut response = response.map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("{url}: {e}"))?;
    let json: Option<serde_json::Value> = serde_json::from_str(&body).ok();
    if !status.is_success() {
        let reason = json
            .as_ref()
            .and_then(|j| j["error"].as_str().map(str::to_owned))
            .unwrap_or_default();
        return Err(format!("{url} answered {status} {reason}")
            .trim_end()
            .to_owned());
    }
    json.ok_or_else(|| format!("{url} did not answer JSON"))
}

/// `client_id` and `client_secret` from a credentials file as Pulsar's
/// OAuth2 plugin reads it.
fn read_credentials(path: &PathBuf) -> Result<(String, Secret), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the credentials file {}: {e}", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|_| {
        format!(
            "the credentials file {} is not JSON with client_id and client_secret",
            path.display()
        )
    })?;
    match (json["client_id"].as_str(), json["client_secret"].as_str()) {
        (Some(id), Some(secret)) => Ok((id.to_owned(), Secret::new(secret))),
        _ => Err(format!(
            "the credentials file {} lacks client_id or client_secret",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_refreshed_at_three_quarters_of_its_life() {
        assert_eq!(
            refresh_after(Duration::from_secs(40)),
            Duration::from_secs(30)
        );
        assert_eq!(refresh_after(Duration::ZERO), Duration::from_secs(1));
    }

    #[test]
    fn a_client_renews_at_four_fifths_of_its_tokens_time_left() {
        use base64::Engine as _;
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let wall = std::time::UNIX_EPOCH + Duration::from_secs(1_000);
        let now = Instant::now();
        let jwt = |claims| {
            format!(
                "{}.{}.sig",
                b64(serde_json::json!({"alg": "HS256"})),
                b64(claims)
            )
        };
        let at = renew_at(
            &jwt(serde_json::json!({"sub": "a", "exp": 1_100})),
            now,
            wall,
        );
        assert_eq!(at, Ok(Some(now + Duration::from_secs(80))));
        assert_eq!(
            renew_at(&jwt(serde_json::json!({"sub": "a"})), now, wall),
            Ok(None)
        );
        assert_eq!(
            renew_at(&jwt(serde_json::json!({"exp": 900})), now, wall),
            Ok(None)
        );
        assert_eq!(renew_at("not-a-jwt", now, wall), Ok(None));
        // An exp past any plan is an error, however it is written.
        for exp in [
            serde_json::json!(5_000_000_000_000_000_000_u64),
            serde_json::json!(5e18),
            serde_json::json!(u64::MAX),
            serde_json::json!("soon"),
        ] {
            let got = renew_at(&jwt(serde_json::json!({ "exp": exp })), now, wall);
            assert!(
                got.as_ref().is_err_and(|e| e.contains("exp claim")),
                "{exp}: {got:?}"
            );
        }
    }

    #[test]
    fn a_token_file_is_read_on_each_use() {
        let dir = std::env::temp_dir().join(format!("sluice-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.jwt");
        std::fs::write(&path, "first\n").unwrap();
        let c = Credentials {
            kind: Kind::Token(TokenSource::File(path.clone())),
        };
        assert_eq!(c.token().unwrap().expose(), "first");
        std::fs::write(&path, "second").unwrap();
        assert_eq!(c.token().unwrap().expose(), "second");
        std::fs::write(&path, "").unwrap();
        assert!(c.token().is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

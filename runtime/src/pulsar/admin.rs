//! Questions about topics and namespaces: which topics match a pattern,
//! whether the broker deduplicates, which version of a topic's schema is
//! the one a producer declared.

use sluice_connectors::RecordSchema;

use super::{Client, PulsarError, tls};

/// A GET on the admin REST API: the answer, or why not.
pub(super) type Get = Box<dyn Fn(String) -> Result<Reply, AdminError> + Send + Sync>;

/// Why the admin REST API gave no answer.
#[derive(Debug)]
pub(super) struct AdminError {
    /// The HTTP status, when the API answered one; `None` when it could
    /// not be reached.
    pub(super) status: Option<u16>,
    message: String,
}

impl AdminError {
    /// Whether asking again later may answer: the API was not reached, or
    /// failed on its side.
    pub(super) fn is_transient(&self) -> bool {
        self.status.is_none_or(|s| s >= 500)
    }
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What the admin REST API answered.
pub(super) struct Reply {
    /// The body.
    pub(super) body: String,
    headers: Vec<(String, String)>,
}

impl Reply {
    /// An answer with these headers and no body.
    #[cfg(test)]
    pub(super) fn with_headers(headers: &[(&str, &str)]) -> Self {
        Self {
            body: String::new(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// The value of the header `name` (case-insensitive), if sent.
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Client {
    /// Topics of `namespace` (`tenant/namespace`) whose names match `pattern`.
    pub async fn topics_matching(
        &self,
        namespace: &str,
        pattern: &str,
    ) -> Result<Vec<String>, PulsarError> {
        self.inner
            .watch_topic_list(namespace, pattern)
            .await
            .map_err(|e| PulsarError::new(format!("list topics of {namespace}"), e))
    }

    /// The topics a sink reads for `topics`: each partition of a partitioned
    /// topic (as many as the broker says it has now), any other topic as it
    /// is. Sorted, without duplicates.
    pub async fn partitions(&self, topics: &[String]) -> Result<Vec<String>, PulsarError> {
        let mut out = Vec::with_capacity(topics.len());
        for topic in topics {
            let n = self
                .inner
                .partitioned_topic_metadata(topic)
                .await
                .map_err(|e| PulsarError::new(format!("look up the partitions of {topic}"), e))?;
            if n == 0 {
                out.push(topic.clone());
            } else {
                out.extend((0..n).map(|i| format!("{topic}-partition-{i}")));
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// GETs on the admin REST API at `base`, with the client's TLS settings
    /// and credentials.
    pub(super) fn admin_get(&self, base: &str) -> Result<Get, PulsarError> {
        let base = base.trim_end_matches('/').to_owned();
        let agent = tls::http_agent(&self.settings, self.credentials.identity())?;
        // A token never goes over plain HTTP unless the configuration says
        // so (validation refuses an http:// webServiceUrl with one; this
        // covers the admin URL taken from a pulsar:// serviceUrl).
        let bearer =
            if base.starts_with("http://") && !self.settings.send_credentials_over_plain_http {
                None
            } else {
                self.credentials.bearer()?
            };
        Ok(Box::new(move |path: String| {
            let url = format!("{base}{path}");
            let mut request = agent.get(&url);
            if let Some(token) = &bearer {
                request = request.header("Authorization", format!("Bearer {}", token.expose()));
            }
            let mut response = request.call().map_err(|e| AdminError {
                status: None,
                message: format!("{url}: {e}"),
            })?;
            let status = response.status();
            let refused = |message: String| AdminError {
                status: Some(status.as_u16()),
                message,
            };
            if status == 401 || status == 403 {
                return Err(refused(format!(
                    "{url} answered {status}: the role may not read it"
                )));
            }
            if !status.is_success() {
                return Err(refused(format!("{url} answered {status}")));
            }
            let headers = response
                .headers()
                .iter()
                .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect();
            // A peeked message's body is binary: only its headers are read.
            let body = response.body_mut().read_to_vec().map_err(|e| AdminError {
                status: None,
                message: format!("{url}: {e}"),
            })?;
            let body = String::from_utf8_lossy(&body).into_owned();
            Ok(Reply { body, headers })
        }))
    }

    /// The broker's admin REST API: `webServiceUrl`, else the service URL's
    /// host on Pulsar's default web port.
    pub(super) fn web_url(&self) -> Option<String> {
        self.settings
            .web_service_url
            .clone()
            .or_else(|| default_web_url(&self.settings.service_url))
    }

    /// Whether the broker deduplicates messages on `namespace`
    /// (`tenant/namespace`): the namespace's policy, else the broker's
    /// default. `Ok(None)` when no `webServiceUrl` is configured to ask.
    pub async fn deduplication(&self, namespace: &str) -> Result<Option<bool>, PulsarError> {
        let Some(web) = &self.settings.web_service_url else {
            return Ok(None);
        };
        let context =
            || format!("read the deduplication policy of {namespace} (it takes tenant admin)");
        let get = self.admin_get(web)?;
        let namespace_path = format!("/admin/v2/namespaces/{namespace}/deduplication");
        let answer: Result<bool, String> = tokio::task::spawn_blocking(move || {
            let policy = get(namespace_path).map_err(|e| e.to_string())?.body;
            match policy.trim() {
                "true" => Ok(true),
                "false" => Ok(false),
                // No policy on the namespace: the broker's default applies.
                _ => {
                    let config = get("/admin/v2/brokers/configuration/runtime".to_owned())
                        .map_err(|e| e.to_string())?
                        .body;
                    let config: serde_json::Value =
                        serde_json::from_str(&config).map_err(|e| e.to_string())?;
                    Ok(config["brokerDeduplicationEnabled"].as_str() == Some("true"))
                }
            }
        })
        .await
        .map_err(|e| PulsarError::new(context(), e))?;
        answer.map(Some).map_err(|e| PulsarError::new(context(), e))
    }

    /// The version the broker gave `schema` on `topic` (a full
    /// `persistent://` name), once a producer declaring it is open. Asked
    /// of `webServiceUrl`, or of the service URL's host on Pulsar's default
    /// web port when none is configured; reading it takes the permission to
    /// look the topic up, as producing does.
    pub async fn schema_version(
        &self,
        topic: &str,
        schema: &RecordSchema,
    ) -> Result<u64, PulsarError> {
        let context = || format!("look up the version of {topic}'s schema");
        let base = self
            .web_url()
            .ok_or_else(|| PulsarError::new(context(), "no webServiceUrl is configured"))?;
        let get = self.admin_get(&base)?;
        let path = format!(
            "/admin/v2/schemas/{}/schemas",
            topic.trim_start_matches("persistent://")
        );
        let key: serde_json::Value =
            serde_json::from_str(&schema.key).map_err(|e| PulsarError::new(context(), e))?;
        let value: serde_json::Value =
            serde_json::from_str(&schema.value).map_err(|e| PulsarError::new(context(), e))?;
        let answer = tokio::task::spawn_blocking(move || get(path))
            .await
            .map_err(|e| PulsarError::new(context(), e))?
            .map_err(|e| PulsarError::new(context(), e))?
            .body;
        find_version(&answer, &key, &value).ok_or_else(|| {
            PulsarError::new(
                context(),
                "the broker lists no version with this schema's key and value",
            )
        })
    }
}

/// The web service of the broker at `service_url`, on Pulsar's default
/// ports: `http://host:8080`, or `https://host:8443` for `pulsar+ssl://`.
fn default_web_url(service_url: &str) -> Option<String> {
    let (scheme, port, rest) = if let Some(rest) = service_url.strip_prefix("pulsar+ssl://") {
        ("https", 8443, rest)
    } else {
        ("http", 8080, service_url.strip_prefix("pulsar://")?)
    };
    // The first host of a list; its own port is the binary protocol's.
    let first = rest.split([',', '/']).next()?;
    let host = match first.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => first,
    };
    Some(format!("{scheme}://{host}:{port}"))
}

/// In a `GET …/schemas` answer, the version whose `KEY_VALUE` definition
/// has this key and value. The broker renders such a schema's data as
/// `{"key": <definition>, "value": <definition>}`.
fn find_version(answer: &str, key: &serde_json::Value, value: &serde_json::Value) -> Option<u64> {
    let answer: serde_json::Value = serde_json::from_str(answer).ok()?;
    answer["getSchemaResponses"]
        .as_array()?
        .iter()
        .filter(|s| s["type"] == "KEY_VALUE")
        .filter_map(|s| {
            let data: serde_json::Value = serde_json::from_str(s["data"].as_str()?).ok()?;
            (data["key"] == *key && data["value"] == *value).then(|| s["version"].as_u64())?
        })
        .next_back()
}

/// The partitioned topic a partition's name belongs to
/// (`persistent://t/n/orders-partition-3` gives `persistent://t/n/orders`),
/// or the name itself.
pub fn partitioned_name(topic: &str) -> &str {
    topic
        .rsplit_once("-partition-")
        .filter(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .map_or(topic, |(base, _)| base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_an_unreached_or_failing_api_is_worth_asking_again() {
        let error = |status| AdminError {
            status,
            message: String::new(),
        };
        assert!(error(None).is_transient());
        assert!(error(Some(503)).is_transient());
        assert!(!error(Some(404)).is_transient());
        assert!(!error(Some(403)).is_transient());
    }

    #[test]
    fn the_web_service_is_found_on_pulsars_default_ports() {
        assert_eq!(
            default_web_url("pulsar://broker:6650").as_deref(),
            Some("http://broker:8080")
        );
        assert_eq!(
            default_web_url("pulsar+ssl://a:6651,b:6651/").as_deref(),
            Some("https://a:8443")
        );
        assert_eq!(default_web_url("http://x"), None);
    }

    #[test]
    fn the_version_is_the_one_whose_key_and_value_match() {
        let data = |v: i64| json!({"key": {"k": 1}, "value": {"v": v}}).to_string();
        let answer = json!({"getSchemaResponses": [
            {"version": 0, "type": "KEY_VALUE", "data": data(1)},
            {"version": 1, "type": "KEY_VALUE", "data": data(2)},
            {"version": 2, "type": "JSON", "data": data(2)},
        ]})
        .to_string();
        let key = json!({"k": 1});
        assert_eq!(find_version(&answer, &key, &json!({"v": 2})), Some(1));
        assert_eq!(find_version(&answer, &key, &json!({"v": 1})), Some(0));
        assert_eq!(find_version(&answer, &key, &json!({"v": 3})), None);
    }
}

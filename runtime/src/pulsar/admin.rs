//! Questions about topics and namespaces: which topics match a pattern,
//! whether the broker deduplicates.

use super::{Client, PulsarError, tls};

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

    /// Whether the broker deduplicates messages on `namespace`
    /// (`tenant/namespace`): the namespace's policy, else the broker's
    /// default. `Ok(None)` when no `webServiceUrl` is configured to ask.
    pub async fn deduplication(&self, namespace: &str) -> Result<Option<bool>, PulsarError> {
        let Some(web) = &self.settings.web_service_url else {
            return Ok(None);
        };
        let context = || format!("read the deduplication policy of {namespace}");
        let base = web.trim_end_matches('/').to_owned();
        let agent = tls::http_agent(&self.settings, self.credentials.identity())?;
        let bearer = self.credentials.bearer()?;
        let get = move |path: String| -> Result<String, String> {
            let url = format!("{base}{path}");
            let mut request = agent.get(&url);
            if let Some(token) = &bearer {
                request = request.header("Authorization", format!("Bearer {}", token.expose()));
            }
            let mut response = request.call().map_err(|e| format!("{url}: {e}"))?;
            let status = response.status();
            if status == 401 || status == 403 {
                return Err(format!(
                    "{url} answered {status}: the role may not read it (reading a namespace's policies takes tenant admin)"
                ));
            }
            if !status.is_success() {
                return Err(format!("{url} answered {status}"));
            }
            response
                .body_mut()
                .read_to_string()
                .map_err(|e| e.to_string())
        };
        let namespace_path = format!("/admin/v2/namespaces/{namespace}/deduplication");
        let answer: Result<bool, String> = tokio::task::spawn_blocking(move || {
            let policy = get(namespace_path)?;
            match policy.trim() {
                "true" => Ok(true),
                "false" => Ok(false),
                // No policy on the namespace: the broker's default applies.
                _ => {
                    let config = get("/admin/v2/brokers/configuration/runtime".to_owned())?;
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
}

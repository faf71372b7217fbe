//! Discovery for Mercure 1.0 clients [V6]: the hub's OAuth 2.0 protected resource metadata
//! (RFC 9728) and its `Link` headers.
//!
//! A client that meets a 401 without a token follows the challenge's `resource_metadata`
//! (`rejection.rs`) to [`METADATA_PATH`], and learns there the resource identifier its token's
//! `aud` must contain, the authorization servers that issue tokens for the hub (the configured
//! trusted issuers), how to present the token (the `Authorization` header, or the
//! `__Secure-mercure_access_token` cookie) and the authorization detail type it understands.
//! The document needs the hub's public URL (`--hub-url`, the resource identifier): without it,
//! or with 1.0 turned off, there is nothing to advertise and the path answers 404.
//!
//! Every response of the hub's endpoints also carries `Link: <hub URL>; rel="mercure"`, as in
//! the spec's examples, so that a client that reached the hub through some other URL learns its
//! canonical one.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use herald_protocol::TokenRules;
use herald_protocol::access_token::AUTHORIZATION_DETAIL_TYPE;
use http::{HeaderValue, StatusCode, header};
use serde_json::json;
use url::Url;

use crate::auth::{AccessSettings, V1_COOKIE};
use crate::rejection::Rejection;
use crate::{ConfigError, Hub, HubConfig};

/// Where the protected resource metadata of the hub at [`HUB_PATH`] is served (RFC 9728,
/// section 3.1: the well-known prefix inserted before the resource's path).
pub(crate) const METADATA_PATH: &str = "/.well-known/oauth-protected-resource/.well-known/mercure";

/// The 1.0 token rules of each role and the metadata URL, from the settings.
pub(crate) fn access_settings(config: &HubConfig) -> Result<AccessSettings, ConfigError> {
    let resource = config.hub_resource()?;
    let rules = |issuers: &[String]| TokenRules {
        protocols: config.protocols,
        resource: resource.clone(),
        issuers: issuers.to_vec(),
    };
    Ok(AccessSettings {
        publisher_rules: rules(&config.publisher_issuers),
        subscriber_rules: rules(&config.subscriber_issuers),
        resource_metadata: resource
            .as_ref()
            .filter(|_| config.protocols.v1)
            .map(|r| Arc::from(metadata_url(r))),
    })
}

/// The metadata URL of `resource` (RFC 9728, section 3.1): its origin, the well-known prefix,
/// then its path (without a lone `/`).
pub(crate) fn metadata_url(resource: &Url) -> String {
    let path = resource.path().trim_end_matches('/');
    format!(
        "{}/.well-known/oauth-protected-resource{path}",
        resource.origin().ascii_serialization()
    )
}

/// `GET /.well-known/oauth-protected-resource/.well-known/mercure` [V6].
pub(super) async fn metadata(State(hub): State<Hub>) -> Result<Response, Rejection> {
    let config = hub.config();
    let resource = config.hub_url.as_deref().filter(|_| config.protocols.v1);
    let Some(resource) = resource else {
        return Err(Rejection::new(
            StatusCode::NOT_FOUND,
            "this hub publishes no protected resource metadata (it has no --hub-url, or does not \
             serve Mercure 1.0)",
        ));
    };
    let mut issuers: Vec<&str> = Vec::new();
    for issuer in config
        .publisher_issuers
        .iter()
        .chain(&config.subscriber_issuers)
    {
        if !issuers.contains(&issuer.as_str()) {
            issuers.push(issuer);
        }
    }
    let mut document = json!({
        "resource": resource,
        "bearer_methods_supported": ["header"],
        "authorization_details_types_supported": [AUTHORIZATION_DETAIL_TYPE],
        "mercure_cookie": V1_COOKIE,
        // draft-08 (RECOMMENDED): the revision of the protocol, so that a client tells this
        // hub from one of the earlier revisions, which publish no metadata at all.
        "mercure_version": 8,
    });
    if !issuers.is_empty() {
        document["authorization_servers"] = json!(issuers);
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            ),
        ],
        document.to_string(),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v6_metadata_url_inserts_the_well_known_prefix() {
        let hub = Url::parse("https://hub.example/.well-known/mercure").unwrap();
        assert_eq!(
            metadata_url(&hub),
            "https://hub.example/.well-known/oauth-protected-resource/.well-known/mercure"
        );
        let root = Url::parse("https://hub.example:8443/").unwrap();
        assert_eq!(
            metadata_url(&root),
            "https://hub.example:8443/.well-known/oauth-protected-resource"
        );
    }
}

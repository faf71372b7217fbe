//! Minting tokens: draft-07 tokens with the `mercure` claim, and Mercure 1.0 access tokens
//! (RFC 9068, `typ: at+jwt`) whose rights are `authorization_details` ([`AccessGrants`]).
//! Both are presented the same way (`Authorization: Bearer`), so a [`Publisher`](crate::Publisher)
//! or [`Subscriber`](crate::Subscriber) given either kind of token just sends it.
//!
//! A hub verifies tokens with a key; whoever holds the same HMAC secret (or the private half of
//! its public key) can mint them. [`TokenMinter`] does that for the [`Publisher`](crate::Publisher)
//! built with a key, and for `herald token`.
//!
//! ```
//! use std::time::Duration;
//! use herald_client::token::{MercureClaim, TokenMinter};
//!
//! let minter = TokenMinter::hmac("my-hub-secret");
//! let token = minter
//!     .mint(&MercureClaim::subscriber(["https://example.com/users/42/{+rest}"]), Some(Duration::from_secs(3600)))
//!     .unwrap();
//! assert_eq!(token.split('.').count(), 3);
//! ```

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use jsonwebtoken::Algorithm;
use jsonwebtoken::{EncodingKey, Header};
use serde::Serialize;
use serde_json::Value;

/// The `mercure` claim of a token: what its bearer may publish and receive.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MercureClaim {
    /// Selectors of the topics the bearer may publish to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish: Option<Vec<String>>,
    /// Selectors of the private updates the bearer may receive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<Vec<String>>,
    /// Any JSON, attached by the hub to the subscription.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
}

impl MercureClaim {
    /// A claim allowing to publish to `selectors` (`["*"]` for every topic).
    pub fn publisher<S: Into<String>>(selectors: impl IntoIterator<Item = S>) -> MercureClaim {
        MercureClaim {
            publish: Some(selectors.into_iter().map(Into::into).collect()),
            ..MercureClaim::default()
        }
    }

    /// A claim allowing to receive private updates on `selectors`.
    pub fn subscriber<S: Into<String>>(selectors: impl IntoIterator<Item = S>) -> MercureClaim {
        MercureClaim {
            subscribe: Some(selectors.into_iter().map(Into::into).collect()),
            ..MercureClaim::default()
        }
    }
}

/// The `type` of a Mercure authorization detail (RFC 9396).
pub const AUTHORIZATION_DETAIL_TYPE: &str = "https://mercure.rocks/authorization-detail";

/// One topic matcher of a 1.0 grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicMatch {
    /// The topic byte for byte (`*`: every topic).
    Exact(String),
    /// A WHATWG URL pattern, e.g. `https://example.com/books/:id`.
    UrlPattern(String),
}

impl TopicMatch {
    fn to_json(&self) -> Value {
        match self {
            TopicMatch::Exact(topic) => serde_json::json!({"match": topic}),
            TopicMatch::UrlPattern(pattern) => {
                serde_json::json!({"match": pattern, "match_type": "urlpattern"})
            }
        }
    }
}

/// What a Mercure 1.0 access token allows, and who it is for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccessGrants {
    /// Topics the bearer may publish to.
    pub publish: Vec<TopicMatch>,
    /// Topics of the private updates the bearer may receive.
    pub subscribe: Vec<TopicMatch>,
    /// JSON attached to the bearer's subscriptions (with the `subscribe` grant).
    pub payload: Option<Value>,
    /// The hub's resource identifier (its public URL), required: the token's `aud`.
    pub audience: String,
    /// The issuer identifier (`iss`), which the hub must trust.
    pub issuer: Option<String>,
    /// Who the bearer is (`sub`).
    pub subject: Option<String>,
}

impl AccessGrants {
    /// The `authorization_details` claim: one entry per action that has topics.
    pub fn authorization_details(&self) -> Value {
        let mut details = Vec::new();
        for (action, topics) in [("publish", &self.publish), ("subscribe", &self.subscribe)] {
            if topics.is_empty() {
                continue;
            }
            let mut detail = serde_json::json!({
                "type": AUTHORIZATION_DETAIL_TYPE,
                "actions": [action],
                "topics": topics.iter().map(TopicMatch::to_json).collect::<Vec<_>>(),
            });
            if action == "subscribe"
                && let Some(payload) = &self.payload
            {
                detail["payload"] = payload.clone();
            }
            details.push(detail);
        }
        Value::Array(details)
    }
}

/// Why a key cannot sign, or a token cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// An empty secret or key, which would make tokens anyone can forge.
    #[error("the key is empty")]
    EmptyKey,
    /// An algorithm this minter cannot sign with (it signs with HS*, RS*, PS*, ES256/384 and
    /// EdDSA).
    #[error("algorithm {0:?} is not supported")]
    Unsupported(Algorithm),
    /// An asymmetric algorithm whose key is not a PEM private key of the right kind.
    #[error("{alg:?} needs a PEM-encoded private key ({expected}): {reason}")]
    InvalidPem {
        /// The algorithm the key was meant for.
        alg: Algorithm,
        /// The kind of key that algorithm needs ("RSA", "EC, PKCS#8", "Ed25519").
        expected: &'static str,
        /// Why the key did not parse, as the JWT library says.
        reason: String,
    },
    /// The claims could not be serialized or signed.
    #[error("signing failed: {0}")]
    Signing(String),
    /// A 1.0 access token needs an audience (the hub's URL) and an expiry.
    #[error("an access token needs {0}")]
    Incomplete(&'static str),
}

/// Signs tokens with one key and one algorithm.
#[derive(Clone)]
pub struct TokenMinter {
    algorithm: Algorithm,
    key: EncodingKey,
}

impl fmt::Debug for TokenMinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenMinter")
            .field("algorithm", &self.algorithm)
            .field("key", &crate::error::Redacted)
            .finish()
    }
}

impl TokenMinter {
    /// An HS256 minter with a shared secret, the usual Mercure setup.
    pub fn hmac(secret: impl AsRef<[u8]>) -> TokenMinter {
        TokenMinter {
            algorithm: Algorithm::HS256,
            key: EncodingKey::from_secret(secret.as_ref()),
        }
    }

    /// A minter for `algorithm`: for HS256/384/512 `key` is the shared secret; for RS*/PS* it is
    /// a PEM RSA private key, for ES256/ES384 a PEM EC private key (PKCS#8), for EdDSA a PEM
    /// Ed25519 private key.
    pub fn new(algorithm: Algorithm, key: &[u8]) -> Result<TokenMinter, MintError> {
        if key.is_empty() {
            return Err(MintError::EmptyKey);
        }
        let pem = |expected: &'static str| {
            move |e: jsonwebtoken::errors::Error| MintError::InvalidPem {
                alg: algorithm,
                expected,
                reason: e.to_string(),
            }
        };
        let key = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => EncodingKey::from_secret(key),
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => EncodingKey::from_rsa_pem(key).map_err(pem("RSA"))?,
            Algorithm::ES256 | Algorithm::ES384 => {
                EncodingKey::from_ec_pem(key).map_err(pem("EC, PKCS#8"))?
            }
            Algorithm::EdDSA => EncodingKey::from_ed_pem(key).map_err(pem("Ed25519"))?,
            other => return Err(MintError::Unsupported(other)),
        };
        Ok(TokenMinter { algorithm, key })
    }

    /// The algorithm tokens are signed with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// A token carrying `claim`, valid for `ttl` from now (`None`: no `exp`, valid until the key
    /// changes).
    pub fn mint(&self, claim: &MercureClaim, ttl: Option<Duration>) -> Result<String, MintError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let exp = ttl.map(|ttl| now + ttl.as_secs().max(1));
        self.mint_payload(claim, exp, None)
    }

    /// A token carrying `claim`, an optional `exp` (seconds since the Unix epoch) and `extra`
    /// top-level claims (an object's members are merged; `iat` is always set).
    pub fn mint_payload(
        &self,
        claim: &MercureClaim,
        exp: Option<u64>,
        extra: Option<&serde_json::Map<String, Value>>,
    ) -> Result<String, MintError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut payload = serde_json::Map::new();
        if let Some(extra) = extra {
            payload.extend(extra.clone());
        }
        payload.insert(
            "mercure".into(),
            serde_json::to_value(claim).map_err(|e| MintError::Signing(e.to_string()))?,
        );
        payload.insert("iat".into(), now.into());
        if let Some(exp) = exp {
            payload.insert("exp".into(), exp.into());
        }
        jsonwebtoken::encode(&Header::new(self.algorithm), &payload, &self.key)
            .map_err(|e| MintError::Signing(e.to_string()))
    }
}

impl TokenMinter {
    /// A Mercure 1.0 access token (`typ: at+jwt`) carrying `grants`, valid for `ttl` from now
    /// (required: 1.0 tokens must expire). `iat` and a random `jti` are set.
    pub fn mint_access_token(
        &self,
        grants: &AccessGrants,
        ttl: Duration,
    ) -> Result<String, MintError> {
        if grants.audience.is_empty() {
            return Err(MintError::Incomplete("an audience (the hub's URL)"));
        }
        if ttl.is_zero() {
            return Err(MintError::Incomplete("an expiry (a ttl above zero)"));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut payload = serde_json::json!({
            "aud": grants.audience,
            "iat": now,
            "exp": now + ttl.as_secs().max(1),
            "jti": herald_protocol::generate_id(),
            "authorization_details": grants.authorization_details(),
        });
        if let Some(issuer) = &grants.issuer {
            payload["iss"] = issuer.clone().into();
        }
        if let Some(subject) = &grants.subject {
            payload["sub"] = subject.clone().into();
        }
        let mut header = Header::new(self.algorithm);
        header.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&header, &payload, &self.key)
            .map_err(|e| MintError::Signing(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_protocol::{ProtocolVersion, TokenRules, TokenVerifier, TopicMatcher};

    #[test]
    fn minted_tokens_verify_with_the_hubs_verifier() {
        let minter = TokenMinter::hmac("secret-secret-secret-secret-1234");
        let token = minter
            .mint(
                &MercureClaim::publisher(["https://example.com/{id}"]),
                Some(Duration::from_secs(60)),
            )
            .unwrap();
        let claims = TokenVerifier::new(Algorithm::HS256, b"secret-secret-secret-secret-1234")
            .unwrap()
            .verify(&token)
            .unwrap();
        assert_eq!(
            claims.grants.publish,
            vec![TopicMatcher::Template("https://example.com/{id}".into())]
        );
        assert!(claims.grants.subscribe.is_empty());
        assert!(claims.expires_at.is_some());
    }

    #[test]
    fn v2_minted_access_tokens_verify_with_the_hubs_rules() {
        let key = b"secret-secret-secret-secret-1234";
        let grants = AccessGrants {
            publish: vec![TopicMatch::UrlPattern(
                "https://example.com/books/:id".into(),
            )],
            subscribe: vec![TopicMatch::Exact("*".into())],
            payload: Some(serde_json::json!({"u": 1})),
            audience: "https://hub.example/.well-known/mercure".into(),
            issuer: Some("https://app.example".into()),
            subject: Some("alice".into()),
        };
        let token = TokenMinter::hmac(key)
            .mint_access_token(&grants, Duration::from_secs(60))
            .unwrap();
        let rules = TokenRules {
            resource: Some("https://hub.example/.well-known/mercure".parse().unwrap()),
            issuers: vec!["https://app.example".into()],
            ..TokenRules::default()
        };
        let claims = TokenVerifier::new(Algorithm::HS256, key)
            .unwrap()
            .verify_with(&token, &rules)
            .unwrap();
        assert_eq!(claims.edition, ProtocolVersion::V1);
        assert_eq!(claims.subject.as_deref(), Some("alice"));
        assert_eq!(claims.grants.subscribe, vec![TopicMatcher::Any]);
        assert_eq!(claims.grants.payload(), Some(&serde_json::json!({"u": 1})));
        let TopicMatcher::UrlPattern(pattern) = &claims.grants.publish[0] else {
            panic!("not a URL pattern")
        };
        assert!(pattern.is_match("https://example.com/books/3"));
        let no_audience = AccessGrants {
            audience: String::new(),
            ..grants
        };
        assert!(matches!(
            TokenMinter::hmac(key).mint_access_token(&no_audience, Duration::from_secs(60)),
            Err(MintError::Incomplete(_))
        ));
    }

    #[test]
    fn a_non_pem_key_for_rsa_is_refused_with_the_reason() {
        let err = TokenMinter::new(Algorithm::RS256, b"not a pem").unwrap_err();
        assert!(matches!(err, MintError::InvalidPem { .. }), "{err}");
        assert!(err.to_string().contains("RSA"), "{err}");
        assert_eq!(
            TokenMinter::new(Algorithm::HS256, b"").unwrap_err(),
            MintError::EmptyKey
        );
    }
}

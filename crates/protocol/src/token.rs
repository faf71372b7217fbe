//! Verifying a JSON Web Token and reading what it grants, for both editions: the draft-07
//! `mercure` claim [R18][R20] and Mercure 1.0 access tokens (`typ: at+jwt`, see
//! [`crate::access_token`]) [V2].
//!
//! Verification is strict by construction: a [`TokenVerifier`] is bound to exactly one algorithm
//! and one key, so `alg: none` (which `jsonwebtoken` cannot even represent) and algorithm
//! confusion (an HMAC token presented to a hub configured with an RSA public key) both fail
//! before any signature check. For draft-07 tokens `exp` and `nbf` are enforced when present,
//! with no leeway; they are not required, because Mercure tokens in the wild often have no
//! `exp`. 1.0 tokens follow [`TokenRules`] (`exp` required, `aud`, `iss`).
//!
//! Either edition yields the same [`Claims`] with its [`Grants`], so the hub's routes never care
//! which edition a token was.

use std::fmt;

pub use jsonwebtoken::Algorithm;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::ProtocolVersion;
use crate::access_token::{Grants, TokenRules, is_access_token_type, v1_claims};

/// Why a token was refused. The messages are safe to return to the client [R24].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT at all (bad base64, bad JSON, wrong number of parts): says what.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The header's `alg` is not the one algorithm the hub's key is for (`none` included).
    #[error("token signed with {found}, but this hub only accepts {expected}")]
    WrongAlgorithm {
        /// The hub's algorithm.
        expected: String,
        /// The token's `alg`.
        found: String,
    },
    /// The signature does not match the hub's key.
    #[error("token signature does not verify with the hub's key")]
    BadSignature,
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not valid yet (nbf is in the future)")]
    NotYetValid,
    /// The claims do not have the shape Mercure expects (says which).
    #[error("invalid claims: {0}")]
    InvalidClaims(String),
    /// The token's `kid` names no key of the hub's JWK Set (after a refresh of the set).
    #[error("unknown key id {0:?}: no key of the hub's JWK Set has this kid")]
    UnknownKeyId(String),
    /// The token has no `kid` and the hub's JWK Set has several keys to choose from.
    #[error("token has no \"kid\" header, and the hub's JWK Set has several keys")]
    MissingKeyId,
    /// The token's `alg` is not one the chosen key of the JWK Set may verify.
    #[error("token signed with {found}, but key {kid:?} only verifies {allowed}")]
    WrongAlgorithmForKey {
        /// The key the token named.
        kid: String,
        /// The token's `alg`.
        found: String,
        /// What that key verifies.
        allowed: String,
    },
    /// A 1.0 access token without `exp`.
    #[error("access token without exp (required for at+jwt tokens)")]
    MissingExpiry,
    /// A 1.0 access token whose `aud` does not contain the hub's resource identifier.
    #[error("access token audience does not contain the hub's resource identifier {expected}")]
    WrongAudience {
        /// The hub's resource identifier.
        expected: String,
    },
    /// A 1.0 access token from an issuer the hub does not trust for this role.
    #[error("access token issuer {0:?} is not a trusted issuer of this hub")]
    UntrustedIssuer(String),
    /// A 1.0 access token, and the hub has no resource identifier (`--hub-url`) to check it.
    #[error("access tokens (at+jwt) need the hub's URL to check their audience: set --hub-url")]
    NoResourceIdentifier,
    /// A token of an edition the hub does not serve (`--protocols`).
    #[error("{0} tokens are not accepted by this hub (--protocols)")]
    ProtocolDisabled(ProtocolVersion),
    /// A Mercure authorization detail that is invalid or past the limits; says which.
    #[error("invalid authorization_details: {0}")]
    InvalidAuthorizationDetails(String),
}

/// Why a key could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No key material at all.
    #[error("the key is empty")]
    Empty,
    /// An algorithm the hub does not verify.
    #[error("algorithm {0:?} is not supported")]
    Unsupported(Algorithm),
    /// An asymmetric algorithm whose key is not a usable PEM public key.
    #[error("{alg:?} needs a PEM-encoded public key: {reason}")]
    InvalidPem {
        /// The algorithm the key was for.
        alg: Algorithm,
        /// Why the PEM was refused.
        reason: String,
    },
}

/// The `mercure` claim of a draft-07 token.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MercureClaim {
    /// Selectors of the topics the bearer may publish to; `None` or empty allows nothing [R15].
    #[serde(default)]
    pub publish: Option<Vec<String>>,
    /// Selectors of the private updates the bearer may receive [R20].
    #[serde(default)]
    pub subscribe: Option<Vec<String>>,
    /// Arbitrary data attached to the subscription (shown in subscription events).
    #[serde(default)]
    pub payload: Option<Value>,
}

/// The verified claims the hub acts on, the same for both editions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claims {
    /// The edition of the token: a draft-07 token (`mercure` claim) or a 1.0 access token.
    pub edition: ProtocolVersion,
    /// What the token allows.
    pub grants: Grants,
    /// `exp`, in seconds since the Unix epoch: a subscription ends then at the latest [R11].
    pub expires_at: Option<u64>,
    /// `sub`, when present (1.0): who the bearer is.
    pub subject: Option<String>,
    /// `client_id`, when present (1.0): the OAuth client the token was issued to.
    pub client_id: Option<String>,
    /// `jti`, when present (1.0): the token's identifier, for the logs.
    pub token_id: Option<String>,
    /// `iss`, when present (1.0).
    pub issuer: Option<String>,
}

/// Verifies tokens with one key and one algorithm.
#[derive(Clone)]
pub struct TokenVerifier {
    algorithm: Algorithm,
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.debug_struct("TokenVerifier")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// A verifier for `algorithm`. For the HS* family `key` is the shared secret; for every other
    /// family it is a PEM-encoded public key.
    pub fn new(algorithm: Algorithm, key: &[u8]) -> Result<TokenVerifier, KeyError> {
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        let pem_error = |e: jsonwebtoken::errors::Error| KeyError::InvalidPem {
            alg: algorithm,
            reason: e.to_string(),
        };
        let key = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => DecodingKey::from_secret(key),
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => DecodingKey::from_rsa_pem(key).map_err(pem_error)?,
            Algorithm::ES256 | Algorithm::ES384 => {
                DecodingKey::from_ec_pem(key).map_err(pem_error)?
            }
            Algorithm::EdDSA => DecodingKey::from_ed_pem(key).map_err(pem_error)?,
            other => return Err(KeyError::Unsupported(other)),
        };
        Ok(TokenVerifier {
            algorithm,
            key,
            validation: strict_validation(algorithm),
        })
    }

    /// The algorithm this verifier accepts.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Verifies `token` with the default [`TokenRules`] (both editions, no resource identifier,
    /// so only draft-07 tokens pass) and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.verify_with(token, &TokenRules::default())
    }

    /// Verifies `token`, a 1.0 access token judged by `rules`, and returns its claims.
    pub fn verify_with(&self, token: &str, rules: &TokenRules) -> Result<Claims, TokenError> {
        let header = read_header(token)?;
        if header.alg != self.algorithm {
            return Err(TokenError::WrongAlgorithm {
                expected: format!("{:?}", self.algorithm),
                found: format!("{:?}", header.alg),
            });
        }
        decode_claims(token, &header, &self.key, &self.validation, rules)
    }
}

/// The token's header, or why it is not a JWT with a supported algorithm.
pub(crate) fn read_header(token: &str) -> Result<jsonwebtoken::Header, TokenError> {
    jsonwebtoken::decode_header(token).map_err(|e| {
        TokenError::Malformed(match e.kind() {
            ErrorKind::InvalidToken | ErrorKind::Base64(_) => {
                "not a JWT (expected three base64url parts separated by dots)".to_owned()
            }
            _ => format!(
                "unreadable header: {e} (it must name a supported algorithm; \"none\" is \
                 never accepted)"
            ),
        })
    })
}

/// The strict validation for `algorithm`: the signature and `exp` when present, no leeway.
/// `nbf` is checked by [`decode_claims`], whose leeway depends on the edition; `aud`, `iss` and
/// a required `exp` by the 1.0 rules.
pub(crate) fn strict_validation(algorithm: Algorithm) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.required_spec_claims.clear();
    validation.leeway = 0;
    validation.validate_exp = true;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation
}

/// Checks the signature and `exp` of `token`, whose header algorithm the caller has already
/// matched against `validation`, then reads its claims as its edition says (`typ`).
pub(crate) fn decode_claims(
    token: &str,
    header: &jsonwebtoken::Header,
    key: &DecodingKey,
    validation: &Validation,
    rules: &TokenRules,
) -> Result<Claims, TokenError> {
    let data =
        jsonwebtoken::decode::<Map<String, Value>>(token, key, validation).map_err(|e| match e
            .kind()
        {
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::InvalidAlgorithm => TokenError::WrongAlgorithm {
                expected: format!("{:?}", validation.algorithms),
                found: "another algorithm".to_owned(),
            },
            ErrorKind::Json(_) | ErrorKind::InvalidClaimFormat(_) => {
                TokenError::InvalidClaims(e.to_string())
            }
            _ => TokenError::Malformed(e.to_string()),
        })?;
    let now = jsonwebtoken::get_current_timestamp();
    if is_access_token_type(header.typ.as_deref()) {
        if !rules.protocols.v1 {
            return Err(TokenError::ProtocolDisabled(ProtocolVersion::V1));
        }
        return v1_claims(&data.claims, rules, now);
    }
    if !rules.protocols.draft07 {
        return Err(TokenError::ProtocolDisabled(ProtocolVersion::Draft07));
    }
    draft07_claims(data.claims, now)
}

/// The claims of a draft-07 token: the `mercure` claim or its namespaced twin [R20], `exp`, and
/// `nbf` enforced with no leeway.
fn draft07_claims(mut payload: Map<String, Value>, now: u64) -> Result<Claims, TokenError> {
    if let Some(nbf) = payload.get("nbf") {
        let nbf = nbf
            .as_f64()
            .ok_or_else(|| TokenError::InvalidClaims("nbf is not a number".into()))?;
        if nbf > now as f64 {
            return Err(TokenError::NotYetValid);
        }
    }
    let exp = match payload.get("exp") {
        None | Some(Value::Null) => None,
        Some(exp) => Some(
            exp.as_f64()
                .ok_or_else(|| TokenError::InvalidClaims("exp is not a number".into()))?,
        ),
    };
    let claim = payload
        .remove("mercure")
        .filter(|v| !v.is_null())
        .or_else(|| payload.remove("https://mercure.rocks/"));
    let mercure = match claim {
        None | Some(Value::Null) => MercureClaim::default(),
        Some(value) => serde_json::from_value(value).map_err(|e| {
            TokenError::InvalidClaims(format!(
                "the \"mercure\" claim must be an object with optional \"publish\" and \
                 \"subscribe\" arrays of strings and a \"payload\": {e}"
            ))
        })?,
    };
    Ok(Claims {
        edition: ProtocolVersion::Draft07,
        grants: Grants::from_draft07(mercure),
        expires_at: exp.map(|exp| exp.max(0.0) as u64),
        ..Claims::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access_token::TopicMatcher;
    use crate::version::ProtocolSet;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    const KEY: &[u8] = b"test-secret-test-secret-test-secret";

    fn sign(alg: Algorithm, claims: Value) -> String {
        encode(&Header::new(alg), &claims, &EncodingKey::from_secret(KEY)).unwrap()
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[test]
    fn r18_valid_token_gives_claims() {
        let v = TokenVerifier::new(Algorithm::HS256, KEY).unwrap();
        let token = sign(
            Algorithm::HS256,
            json!({"mercure": {"publish": ["*"], "subscribe": ["a"], "payload": {"u": 1}}, "exp": now() + 60}),
        );
        let claims = v.verify(&token).unwrap();
        assert_eq!(claims.edition, ProtocolVersion::Draft07);
        assert_eq!(claims.grants.publish, vec![TopicMatcher::Any]);
        assert_eq!(
            claims.grants.subscribe,
            vec![TopicMatcher::Template("a".into())]
        );
        assert_eq!(claims.grants.payload(), Some(&json!({"u": 1})));
        assert!(claims.expires_at.is_some());
    }

    #[test]
    fn r20_namespaced_claim_is_accepted() {
        let v = TokenVerifier::new(Algorithm::HS256, KEY).unwrap();
        let token = sign(
            Algorithm::HS256,
            json!({"https://mercure.rocks/": {"subscribe": ["x"]}}),
        );
        assert_eq!(
            v.verify(&token).unwrap().grants.subscribe,
            vec![TopicMatcher::Template("x".into())]
        );
    }

    #[test]
    fn r18_expired_and_immature_tokens_are_refused() {
        let v = TokenVerifier::new(Algorithm::HS256, KEY).unwrap();
        let expired = sign(Algorithm::HS256, json!({"mercure": {}, "exp": now() - 1}));
        assert_eq!(v.verify(&expired), Err(TokenError::Expired));
        let immature = sign(Algorithm::HS256, json!({"mercure": {}, "nbf": now() + 600}));
        assert_eq!(v.verify(&immature), Err(TokenError::NotYetValid));
    }

    #[test]
    fn r18_wrong_key_and_wrong_algorithm_are_refused() {
        let v = TokenVerifier::new(Algorithm::HS256, b"another key").unwrap();
        let token = sign(Algorithm::HS256, json!({"mercure": {}}));
        assert_eq!(v.verify(&token), Err(TokenError::BadSignature));
        let v = TokenVerifier::new(Algorithm::HS512, KEY).unwrap();
        assert!(matches!(
            v.verify(&token),
            Err(TokenError::WrongAlgorithm { .. })
        ));
    }

    #[test]
    fn r18_alg_none_is_refused() {
        // {"alg":"none","typ":"JWT"} . {"mercure":{"publish":["*"]}} . (no signature)
        let token = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJtZXJjdXJlIjp7InB1Ymxpc2giOlsiKiJdfX0.";
        let v = TokenVerifier::new(Algorithm::HS256, KEY).unwrap();
        assert!(matches!(v.verify(token), Err(TokenError::Malformed(_))));
    }

    #[test]
    fn r18_malformed_claim_is_refused() {
        let v = TokenVerifier::new(Algorithm::HS256, KEY).unwrap();
        let token = sign(Algorithm::HS256, json!({"mercure": {"publish": "*"}}));
        assert!(matches!(
            v.verify(&token),
            Err(TokenError::InvalidClaims(_))
        ));
    }

    fn v1_rules(protocols: ProtocolSet) -> TokenRules {
        TokenRules {
            protocols,
            resource: Some(url::Url::parse("https://hub.example/.well-known/mercure").unwrap()),
            issuers: vec![],
        }
    }

    #[test]
    fn v2_typ_decides_the_edition_and_protocols_can_turn_either_off() {
        let v = TokenVerifier::new(Algorithm::HS256, KEY).unwrap();
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("at+jwt".into());
        let claims = json!({
            "aud": "https://hub.example/.well-known/mercure", "exp": now() + 60,
            "mercure": {"publish": ["*"]},
            "authorization_details": [{"type": crate::access_token::AUTHORIZATION_DETAIL_TYPE,
                "actions": ["subscribe"], "topics": [{"match": "x"}]}],
        });
        let v1 = encode(&header, &claims, &EncodingKey::from_secret(KEY)).unwrap();
        let draft07 = sign(Algorithm::HS256, claims);
        let both = v1_rules(ProtocolSet::default());
        let c = v.verify_with(&v1, &both).unwrap();
        assert_eq!(c.edition, ProtocolVersion::V1);
        assert!(
            c.grants.publish.is_empty(),
            "the mercure claim is not read from at+jwt"
        );
        assert_eq!(c.grants.subscribe, vec![TopicMatcher::Exact("x".into())]);
        let c = v.verify_with(&draft07, &both).unwrap();
        assert_eq!(c.edition, ProtocolVersion::Draft07);
        assert_eq!(c.grants.publish, vec![TopicMatcher::Any]);
        let only_v1 = v1_rules(ProtocolSet::parse("1.0").unwrap());
        assert_eq!(
            v.verify_with(&draft07, &only_v1),
            Err(TokenError::ProtocolDisabled(ProtocolVersion::Draft07))
        );
        let only_draft07 = v1_rules(ProtocolSet::parse("draft-07").unwrap());
        assert_eq!(
            v.verify_with(&v1, &only_draft07),
            Err(TokenError::ProtocolDisabled(ProtocolVersion::V1))
        );
    }

    #[test]
    fn asymmetric_algorithms_need_a_pem_key() {
        assert!(matches!(
            TokenVerifier::new(Algorithm::RS256, b"not a pem"),
            Err(KeyError::InvalidPem { .. })
        ));
        assert_eq!(
            TokenVerifier::new(Algorithm::HS256, b"").unwrap_err(),
            KeyError::Empty
        );
    }
}

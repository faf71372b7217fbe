//! What a JSON Web Token grants, for the draft-07 `mercure` claim [R18][R20].
//!
//! Verification is strict by construction: a [`TokenVerifier`] is bound to exactly one algorithm
//! and one key, so `alg: none` (which `jsonwebtoken` cannot even represent) and algorithm
//! confusion (an HMAC token presented to a hub configured with an RSA public key) both fail
//! before any signature check. `exp` and `nbf` are enforced when present, with no leeway;
//! they are not required, because Mercure tokens in the wild often have no `exp`.

use std::fmt;

pub use jsonwebtoken::Algorithm;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

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

/// The verified claims the hub acts on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claims {
    /// The `mercure` claim (empty when absent).
    pub mercure: MercureClaim,
    /// `exp`, in seconds since the Unix epoch: a subscription ends then at the latest [R11].
    pub expires_at: Option<u64>,
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

    /// Verifies `token` and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = read_header(token)?;
        if header.alg != self.algorithm {
            return Err(TokenError::WrongAlgorithm {
                expected: format!("{:?}", self.algorithm),
                found: format!("{:?}", header.alg),
            });
        }
        decode_claims(token, &self.key, &self.validation)
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

/// The strict validation for `algorithm`: `exp`/`nbf` checked when present, no leeway.
pub(crate) fn strict_validation(algorithm: Algorithm) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.required_spec_claims.clear();
    validation.leeway = 0;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation
}

/// Checks the signature and the time claims of `token`, whose header algorithm the caller has
/// already matched against `validation`, and reads its claims.
pub(crate) fn decode_claims(
    token: &str,
    key: &DecodingKey,
    validation: &Validation,
) -> Result<Claims, TokenError> {
    let data =
        jsonwebtoken::decode::<RawClaims>(token, key, validation).map_err(|e| match e.kind() {
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
    data.claims.into_claims()
}

/// The payload as it comes off the wire; `mercure` and its namespaced twin are both accepted
/// [R20], kept as raw JSON so that a malformed claim gets a precise message.
#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    mercure: Option<Value>,
    #[serde(default, rename = "https://mercure.rocks/")]
    namespaced: Option<Value>,
    #[serde(default)]
    exp: Option<f64>,
}

impl RawClaims {
    fn into_claims(self) -> Result<Claims, TokenError> {
        let mercure = match self.mercure.or(self.namespaced) {
            None | Some(Value::Null) => MercureClaim::default(),
            Some(value) => serde_json::from_value(value).map_err(|e| {
                TokenError::InvalidClaims(format!(
                    "the \"mercure\" claim must be an object with optional \"publish\" and \
                     \"subscribe\" arrays of strings and a \"payload\": {e}"
                ))
            })?,
        };
        Ok(Claims {
            mercure,
            expires_at: self.exp.map(|exp| exp.max(0.0) as u64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert_eq!(
            claims.mercure.publish.as_deref(),
            Some(&["*".to_string()][..])
        );
        assert_eq!(claims.mercure.payload, Some(json!({"u": 1})));
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
            v.verify(&token).unwrap().mercure.subscribe,
            Some(vec!["x".to_string()])
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

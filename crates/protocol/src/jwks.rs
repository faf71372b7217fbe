//! JSON Web Key Sets [R18]: which key of a set verifies a token, decided without I/O.
//!
//! A [`KeySet`] is parsed from the JSON of a JWK Set (RFC 7517) and verifies a token with the key
//! its header's `kid` names (a token without `kid` may use the only key of a one-key set). It is
//! as strict as [`TokenVerifier`](crate::TokenVerifier): the token's `alg` must be one the key may
//! verify, that is the JWK's own `alg` when it has one, and in any case an algorithm of the key's
//! type (RS*/PS* for RSA, ES256 for P-256, ES384 for P-384, EdDSA for Ed25519), so an HMAC token
//! can never be checked against a public key (algorithm confusion). Symmetric (`oct`) keys are
//! refused when the set is loaded: a set is published, and a published HMAC secret lets anyone
//! mint tokens. Keys for encryption (`use: enc`, or an encryption `alg`) and of types or curves
//! that cannot verify a supported algorithm are skipped, as identity providers publish them side
//! by side with their signing keys.
//!
//! Fetching and refreshing a set is the hub's business (`herald-hub`'s `jwks` module).

use std::fmt;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::access_token::TokenRules;
use crate::token::{Claims, TokenError, decode_claims, read_header, strict_validation};

/// Why a JWK Set cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// The document is not JSON of the shape `{"keys": [...]}`; holds the parser's message.
    #[error("not a JWK Set (expected {{\"keys\": [...]}}): {0}")]
    Parse(String),
    #[error(
        "key {0} is a symmetric (\"oct\") key: a JWK Set may hold only public keys (an HMAC \
         secret belongs in the jwt-key setting)"
    )]
    /// A symmetric (`oct`) key, refused because a published HMAC secret lets anyone mint
    /// tokens; holds the key's label.
    Symmetric(String),
    /// A signing key that cannot be used: malformed parameters, or a `kid` two keys share.
    #[error("key {key}: {reason}")]
    InvalidKey {
        /// The key's label: its quoted `kid`, or `#index (without kid)`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Once encryption keys and unsupported types are skipped, nothing is left to verify with.
    #[error("the set has no key that can verify signatures (RSA, EC P-256/P-384 or Ed25519)")]
    NoKeys,
}

/// The type of a public key, which decides the algorithms it may verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyType {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyType {
    fn allows(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyType::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyType::P256 => alg == ES256,
            KeyType::P384 => alg == ES384,
            KeyType::Ed25519 => alg == EdDSA,
        }
    }

    fn algorithms(self) -> &'static str {
        match self {
            KeyType::Rsa => "RS256, RS384, RS512, PS256, PS384, PS512 (it is an RSA key)",
            KeyType::P256 => "ES256 (it is an EC P-256 key)",
            KeyType::P384 => "ES384 (it is an EC P-384 key)",
            KeyType::Ed25519 => "EdDSA (it is an Ed25519 key)",
        }
    }
}

/// One usable key of a set.
#[derive(Clone)]
struct SetKey {
    kid: Option<String>,
    /// The JWK's own `alg`, when it has one: then the only algorithm it verifies.
    alg: Option<Algorithm>,
    key_type: KeyType,
    key: DecodingKey,
}

impl SetKey {
    fn label(&self) -> String {
        self.kid
            .clone()
            .unwrap_or_else(|| "(without kid)".to_owned())
    }
}

/// The usable keys of a JWK Set.
#[derive(Clone)]
pub struct KeySet {
    keys: Vec<SetKey>,
    skipped: usize,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.kids().collect::<Vec<_>>())
            .field("skipped", &self.skipped)
            .finish()
    }
}

impl KeySet {
    /// Reads a JWK Set from its JSON.
    pub fn from_json(json: &[u8]) -> Result<KeySet, JwksError> {
        let set: JwkSet =
            serde_json::from_slice(json).map_err(|e| JwksError::Parse(e.to_string()))?;
        let mut keys: Vec<SetKey> = Vec::with_capacity(set.keys.len());
        let mut skipped = 0;
        for (index, jwk) in set.keys.iter().enumerate() {
            let label = match &jwk.common.key_id {
                Some(kid) => format!("{kid:?}"),
                None => format!("#{index} (without kid)"),
            };
            match read_key(jwk, &label)? {
                Some(key) => {
                    if key.kid.is_some() && keys.iter().any(|k| k.kid == key.kid) {
                        return Err(JwksError::InvalidKey {
                            key: label,
                            reason: "two keys have this kid".to_owned(),
                        });
                    }
                    keys.push(key);
                }
                None => skipped += 1,
            }
        }
        if keys.is_empty() {
            return Err(JwksError::NoKeys);
        }
        Ok(KeySet { keys, skipped })
    }

    /// The `kid`s of the usable keys.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().filter_map(|k| k.kid.as_deref())
    }

    /// How many usable keys the set has.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Never true: a set without a usable key is refused by [`KeySet::from_json`].
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// How many keys of the JSON were skipped (encryption keys, unsupported types or curves).
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Verifies `token` with the key its `kid` names, and returns its claims.
    /// [`TokenError::UnknownKeyId`] tells the caller that a fresher set might know the key.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.verify_with(token, &TokenRules::default())
    }

    /// [`KeySet::verify`], a 1.0 access token judged by `rules`.
    pub fn verify_with(&self, token: &str, rules: &TokenRules) -> Result<Claims, TokenError> {
        let header = read_header(token)?;
        let key = match &header.kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid.as_str()))
                .ok_or_else(|| TokenError::UnknownKeyId(kid.clone()))?,
            None if self.keys.len() == 1 => &self.keys[0],
            None => return Err(TokenError::MissingKeyId),
        };
        let allowed = match key.alg {
            Some(alg) => alg == header.alg,
            None => key.key_type.allows(header.alg),
        };
        if !allowed {
            return Err(TokenError::WrongAlgorithmForKey {
                kid: key.label(),
                found: format!("{:?}", header.alg),
                allowed: match key.alg {
                    Some(alg) => format!("{alg:?} (the alg of the key)"),
                    None => key.key_type.algorithms().to_owned(),
                },
            });
        }
        decode_claims(
            token,
            &header,
            &key.key,
            &strict_validation(header.alg),
            rules,
        )
    }
}

/// The key `jwk` describes, `None` for one that cannot verify a supported signature algorithm.
fn read_key(jwk: &Jwk, label: &str) -> Result<Option<SetKey>, JwksError> {
    let invalid = |reason: String| JwksError::InvalidKey {
        key: label.to_owned(),
        reason,
    };
    let key_type = match &jwk.algorithm {
        AlgorithmParameters::OctetKey(_) => return Err(JwksError::Symmetric(label.to_owned())),
        AlgorithmParameters::Other(other)
            if other.fields.get("kty").and_then(|v| v.as_str()) == Some("oct") =>
        {
            return Err(JwksError::Symmetric(label.to_owned()));
        }
        AlgorithmParameters::RSA(_) => KeyType::Rsa,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => KeyType::P256,
            EllipticCurve::P384 => KeyType::P384,
            _ => return Ok(None),
        },
        AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
            EllipticCurve::Ed25519 => KeyType::Ed25519,
            _ => return Ok(None),
        },
        _ => return Ok(None),
    };
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return Ok(None);
    }
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(declared) => match Algorithm::try_from(declared) {
            Ok(alg) if key_type.allows(alg) => Some(alg),
            Ok(alg) => {
                return Err(invalid(format!(
                    "its alg is {alg:?}, but it can only verify {}",
                    key_type.algorithms()
                )));
            }
            // An encryption algorithm (RSA-OAEP...) or one jsonwebtoken does not know.
            Err(_) => return Ok(None),
        },
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| invalid(e.to_string()))?;
    Ok(Some(SetKey {
        kid: jwk.common.key_id.clone(),
        alg,
        key_type,
        key,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::{Value, json};

    // Test keys only (the same as crates/hub/tests/auth.rs).
    const RSA_PRIVATE: &str = include_str!("../tests/keys/rsa_private.pem");
    const EC_PRIVATE: &str = include_str!("../tests/keys/ec_private.pem");
    const ED_PRIVATE: &str = include_str!("../tests/keys/ed_private.pem");

    fn jwk(private: &EncodingKey, alg: Algorithm, kid: Option<&str>, with_alg: bool) -> Value {
        let mut jwk = Jwk::from_encoding_key(private, alg).unwrap();
        jwk.common.key_id = kid.map(str::to_owned);
        if !with_alg {
            jwk.common.key_algorithm = None;
        }
        serde_json::to_value(jwk).unwrap()
    }

    fn rsa() -> EncodingKey {
        EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap()
    }
    fn ec() -> EncodingKey {
        EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap()
    }
    fn ed() -> EncodingKey {
        EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap()
    }

    fn set(keys: Vec<Value>) -> Result<KeySet, JwksError> {
        KeySet::from_json(json!({ "keys": keys }).to_string().as_bytes())
    }

    fn three_keys() -> KeySet {
        set(vec![
            jwk(&rsa(), Algorithm::RS256, Some("rsa"), false),
            jwk(&ec(), Algorithm::ES256, Some("ec"), true),
            jwk(&ed(), Algorithm::EdDSA, Some("ed"), true),
        ])
        .unwrap()
    }

    fn token(alg: Algorithm, kid: Option<&str>, key: &EncodingKey) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        encode(&header, &json!({"mercure": {"publish": ["*"]}}), key).unwrap()
    }

    #[test]
    fn r18_kid_selects_the_key() {
        let set = three_keys();
        assert_eq!(set.kids().collect::<Vec<_>>(), ["rsa", "ec", "ed"]);
        for (alg, kid, key) in [
            (Algorithm::RS256, "rsa", rsa()),
            (Algorithm::PS384, "rsa", rsa()),
            (Algorithm::ES256, "ec", ec()),
            (Algorithm::EdDSA, "ed", ed()),
        ] {
            let claims = set.verify(&token(alg, Some(kid), &key)).unwrap();
            assert_eq!(
                claims.grants.publish,
                vec![crate::access_token::TopicMatcher::Any]
            );
        }
        assert_eq!(
            set.verify(&token(Algorithm::ES256, Some("unknown"), &ec())),
            Err(TokenError::UnknownKeyId("unknown".into()))
        );
    }

    #[test]
    fn r18_token_without_kid_needs_a_one_key_set() {
        assert_eq!(
            three_keys().verify(&token(Algorithm::ES256, None, &ec())),
            Err(TokenError::MissingKeyId)
        );
        let one = set(vec![jwk(&ec(), Algorithm::ES256, Some("ec"), true)]).unwrap();
        assert!(one.verify(&token(Algorithm::ES256, None, &ec())).is_ok());
    }

    #[test]
    fn r18_algorithm_of_another_key_type_is_refused() {
        let set = three_keys();
        // Algorithm confusion: an HMAC token "signed" with the RSA key's public modulus.
        let public_as_secret = EncodingKey::from_secret(b"the public key, as a secret");
        assert!(matches!(
            set.verify(&token(Algorithm::HS256, Some("rsa"), &public_as_secret)),
            Err(TokenError::WrongAlgorithmForKey { .. })
        ));
        assert!(matches!(
            set.verify(&token(Algorithm::ES256, Some("rsa"), &ec())),
            Err(TokenError::WrongAlgorithmForKey { .. })
        ));
        assert!(matches!(
            set.verify(&token(Algorithm::RS256, Some("ec"), &rsa())),
            Err(TokenError::WrongAlgorithmForKey { .. })
        ));
    }

    #[test]
    fn r18_jwk_alg_restricts_the_key() {
        let set = set(vec![jwk(&rsa(), Algorithm::RS256, Some("rsa"), true)]).unwrap();
        assert!(
            set.verify(&token(Algorithm::RS256, Some("rsa"), &rsa()))
                .is_ok()
        );
        let e = set
            .verify(&token(Algorithm::PS256, Some("rsa"), &rsa()))
            .unwrap_err();
        assert!(matches!(e, TokenError::WrongAlgorithmForKey { .. }));
        assert!(e.to_string().contains("PS256"), "{e}");
    }

    #[test]
    fn r18_jwk_alg_of_another_key_type_is_refused_at_load() {
        let mut bad = jwk(&rsa(), Algorithm::RS256, Some("rsa"), false);
        bad["alg"] = json!("HS256");
        assert!(matches!(set(vec![bad]), Err(JwksError::InvalidKey { .. })));
    }

    #[test]
    fn r18_oct_keys_are_refused_at_load() {
        let oct = json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"});
        let e = set(vec![jwk(&ec(), Algorithm::ES256, Some("ec"), true), oct]).unwrap_err();
        assert_eq!(e, JwksError::Symmetric("\"hmac\"".into()));
    }

    #[test]
    fn encryption_and_unsupported_keys_are_skipped() {
        let mut enc = jwk(&rsa(), Algorithm::RS256, Some("enc"), false);
        enc["use"] = json!("enc");
        let mut oaep = jwk(&rsa(), Algorithm::RS256, Some("oaep"), false);
        oaep["alg"] = json!("RSA-OAEP");
        let unknown = json!({"kty": "XYZ", "kid": "future"});
        let set = set(vec![
            enc,
            oaep,
            unknown,
            jwk(&ec(), Algorithm::ES256, Some("ec"), true),
        ])
        .unwrap();
        assert_eq!(set.kids().collect::<Vec<_>>(), ["ec"]);
        assert_eq!(set.skipped(), 3);
        assert!(matches!(
            set.verify(&token(Algorithm::RS256, Some("enc"), &rsa())),
            Err(TokenError::UnknownKeyId(_))
        ));
    }

    #[test]
    fn unusable_sets_are_refused() {
        assert!(matches!(
            KeySet::from_json(b"not json"),
            Err(JwksError::Parse(_))
        ));
        assert!(matches!(
            KeySet::from_json(b"{\"keys\": []}"),
            Err(JwksError::NoKeys)
        ));
        let twice = vec![
            jwk(&ec(), Algorithm::ES256, Some("k"), true),
            jwk(&rsa(), Algorithm::RS256, Some("k"), true),
        ];
        assert!(matches!(set(twice), Err(JwksError::InvalidKey { .. })));
    }

    #[test]
    fn r18_expiry_is_enforced_with_a_set() {
        let set = three_keys();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("ec".into());
        let expired = encode(
            &header,
            &json!({"mercure": {}, "exp": jsonwebtoken::get_current_timestamp() - 1}),
            &ec(),
        )
        .unwrap();
        assert_eq!(set.verify(&expired), Err(TokenError::Expired));
    }
}

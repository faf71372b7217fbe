//! Mercure 1.0 access tokens (RFC 9068 JWT access tokens) and the grants both editions yield
//! [V2].
//!
//! A token says which edition it is by its header: `typ: at+jwt` (or `application/at+jwt`, in
//! any case) is a 1.0 access token; anything else is a draft-07 token read for its `mercure`
//! claim. Either way the hub gets the same [`Grants`]: what the bearer may publish to and
//! subscribe to, as [`TopicMatcher`]s, so that routes never care where a grant came from.
//!
//! A 1.0 token is checked, after its signature, against the [`TokenRules`] of the key's role:
//! - `exp` is required and enforced (no leeway); `nbf` is enforced with [`NBF_LEEWAY_SECS`] of
//!   leeway, for an issuer whose clock runs slightly ahead of the hub's;
//! - `aud` (a string or an array) must contain the hub's resource identifier (`--hub-url`);
//! - `iss` must be one of the role's trusted issuers when any is configured (a hub that trusts
//!   no authorization server accepts self-issued tokens, as the spec allows);
//! - `authorization_details` entries of type [`AUTHORIZATION_DETAIL_TYPE`] give the grants;
//!   entries of other types are ignored (RFC 9396 tokens may serve several resources); one
//!   invalid Mercure entry rejects the whole token, and the limits [`MAX_DETAILS`],
//!   [`MAX_TOPICS_PER_DETAIL`], [`MAX_TOPIC_MATCHERS`] and [`MAX_MATCH_BYTES`] bound what one
//!   token can make the hub compile;
//! - `sub`, `client_id` and `jti` are kept when present (strings), never required.

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};
use url::Url;

use crate::ProtocolVersion;
use crate::token::{Claims, MercureClaim, TokenError};
use crate::url_pattern::{MAX_URL_PATTERN_BYTES, UrlPatternMatcher};
use crate::version::ProtocolSet;

/// The `type` of a Mercure authorization detail (RFC 9396).
pub const AUTHORIZATION_DETAIL_TYPE: &str = "https://mercure.rocks/authorization-detail";

/// Seconds of leeway on `nbf` for 1.0 tokens (clock skew between issuer and hub).
pub const NBF_LEEWAY_SECS: u64 = 5;

/// Most entries in `authorization_details` (of any type).
pub const MAX_DETAILS: usize = 32;

/// Most topic matchers in one Mercure authorization detail.
pub const MAX_TOPICS_PER_DETAIL: usize = 128;

/// Most topic matchers over all the Mercure authorization details of one token.
pub const MAX_TOPIC_MATCHERS: usize = 256;

/// Longest `match` value, in bytes.
pub const MAX_MATCH_BYTES: usize = MAX_URL_PATTERN_BYTES;

/// How tokens of one role (publisher or subscriber) are judged beyond their signature.
#[derive(Debug, Clone, Default)]
pub struct TokenRules {
    /// The editions accepted; a token of another edition is refused.
    pub protocols: ProtocolSet,
    /// The hub's resource identifier (its public URL), which a 1.0 token's `aud` must contain.
    /// Without it, 1.0 tokens are refused.
    pub resource: Option<Url>,
    /// Trusted issuers: a 1.0 token's `iss` must be one of them. Empty: any issuer (self-issued
    /// tokens, no authorization server advertised).
    pub issuers: Vec<String>,
}

/// Whether a JOSE `typ` names an RFC 9068 access token.
pub fn is_access_token_type(typ: Option<&str>) -> bool {
    typ.is_some_and(|typ| {
        typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
    })
}

/// One topic matcher of a grant.
#[derive(Clone)]
pub enum TopicMatcher {
    /// `*`: every topic.
    Any,
    /// The topic, byte for byte (1.0 `match_type: exact`).
    Exact(String),
    /// A draft-07 selector: an RFC 6570 template, which also matches itself as a literal.
    Template(String),
    /// A WHATWG URL pattern (1.0 `match_type: urlpattern`), compiled when the token was read.
    UrlPattern(Arc<UrlPatternMatcher>),
}

impl TopicMatcher {
    /// A draft-07 selector as a matcher: `*` or a template.
    pub fn draft07(selector: &str) -> TopicMatcher {
        if selector == "*" {
            TopicMatcher::Any
        } else {
            TopicMatcher::Template(selector.to_owned())
        }
    }

    /// The matcher as written.
    pub fn as_str(&self) -> &str {
        match self {
            TopicMatcher::Any => "*",
            TopicMatcher::Exact(s) | TopicMatcher::Template(s) => s,
            TopicMatcher::UrlPattern(p) => p.as_str(),
        }
    }

    /// Whether `topic` is one this matcher names. A template is compiled on each call (the hub
    /// interns the matchers it checks often, `grants.rs`); one too costly to compile matches
    /// only itself.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            TopicMatcher::Any => true,
            TopicMatcher::Exact(exact) => exact == topic,
            TopicMatcher::Template(template) => {
                crate::TopicSelector::parse(template).matches(topic)
            }
            TopicMatcher::UrlPattern(pattern) => pattern.is_match(topic),
        }
    }

    /// The 1.0 `match_type` name (`exact`, `urlpattern`), or `template` for draft-07 selectors.
    pub fn type_name(&self) -> &'static str {
        match self {
            TopicMatcher::Any | TopicMatcher::Exact(_) => "exact",
            TopicMatcher::Template(_) => "template",
            TopicMatcher::UrlPattern(_) => "urlpattern",
        }
    }
}

impl fmt::Debug for TopicMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{:?}", self.type_name(), self.as_str())
    }
}

impl PartialEq for TopicMatcher {
    fn eq(&self, other: &TopicMatcher) -> bool {
        self.type_name() == other.type_name() && self.as_str() == other.as_str()
    }
}

/// A `subscribe` grant's payload and the topics whose subscriptions it describes.
#[derive(Debug, Clone, PartialEq)]
pub struct PayloadGrant {
    /// The topics of the authorization detail (draft-07: `*`).
    pub topics: Vec<TopicMatcher>,
    /// The detail's `payload` (draft-07: the claim's `payload`). `None` for a `subscribe`
    /// detail without one: it still masks the details after it (see [`Grants::payload_for`]).
    pub payload: Option<Value>,
}

/// What a verified token allows, whatever its edition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grants {
    /// Topics the bearer may publish to; empty allows nothing [R15].
    pub publish: Vec<TopicMatcher>,
    /// Topics of the private updates the bearer may receive [R20].
    pub subscribe: Vec<TopicMatcher>,
    /// Every `subscribe` grant with its payload (if any), in the token's order: the first one
    /// matching a subscription gives its payload ([`Grants::payload_for`]).
    pub payloads: Vec<PayloadGrant>,
}

impl Grants {
    /// The grants of a draft-07 `mercure` claim.
    pub fn from_draft07(claim: MercureClaim) -> Grants {
        let matchers = |selectors: Option<Vec<String>>| {
            selectors
                .unwrap_or_default()
                .iter()
                .map(|s| TopicMatcher::draft07(s))
                .collect()
        };
        Grants {
            publish: matchers(claim.publish),
            subscribe: matchers(claim.subscribe),
            payloads: claim
                .payload
                .into_iter()
                .map(|payload| PayloadGrant {
                    topics: vec![TopicMatcher::Any],
                    payload: Some(payload),
                })
                .collect(),
        }
    }

    /// The first payload of the token, whichever topics it describes.
    pub fn payload(&self) -> Option<&Value> {
        self.payloads
            .iter()
            .find_map(|grant| grant.payload.as_ref())
    }

    /// The payload of the subscription whose matcher is `matcher` (the `match*` or `topic` value
    /// as the subscriber wrote it), as draft-08 ("Payloads") defines it: that of the FIRST
    /// `subscribe` grant one of whose topics matches `matcher` taken as a topic (an `exact` grant
    /// the identical string, a URL pattern grant a matcher string it matches, `*` every one).
    /// `None` when no grant matches, or when the first that matches carries no payload: a later
    /// grant never unmasks it. A draft-07 token's payload describes every subscription.
    pub fn payload_for(&self, matcher: &str) -> Option<&Value> {
        self.payloads
            .iter()
            .find(|grant| grant.topics.iter().any(|topic| topic.matches(matcher)))
            .and_then(|grant| grant.payload.as_ref())
    }
}

/// The claims of a 1.0 access token whose signature verified.
pub(crate) fn v1_claims(
    payload: &Map<String, Value>,
    rules: &TokenRules,
    now: u64,
) -> Result<Claims, TokenError> {
    let Some(resource) = &rules.resource else {
        return Err(TokenError::NoResourceIdentifier);
    };
    let exp = match payload.get("exp") {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0).max(0.0) as u64,
        Some(_) => return Err(TokenError::InvalidClaims("exp is not a number".into())),
        None => return Err(TokenError::MissingExpiry),
    };
    if exp <= now {
        return Err(TokenError::Expired);
    }
    if let Some(nbf) = payload.get("nbf") {
        let nbf = nbf
            .as_f64()
            .ok_or_else(|| TokenError::InvalidClaims("nbf is not a number".into()))?;
        if nbf.max(0.0) as u64 > now.saturating_add(NBF_LEEWAY_SECS) {
            return Err(TokenError::NotYetValid);
        }
    }
    let audience_ok = match payload.get("aud") {
        Some(Value::String(aud)) => aud == resource.as_str(),
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(resource.as_str())),
        _ => false,
    };
    if !audience_ok {
        return Err(TokenError::WrongAudience {
            expected: resource.to_string(),
        });
    }
    let issuer = optional_string(payload, "iss")?;
    if !rules.issuers.is_empty()
        && !issuer
            .as_deref()
            .is_some_and(|iss| rules.issuers.iter().any(|i| i == iss))
    {
        return Err(TokenError::UntrustedIssuer(issuer.unwrap_or_default()));
    }
    let grants = match payload.get("authorization_details") {
        None | Some(Value::Null) => Grants::default(),
        Some(details) => {
            read_details(details, resource).map_err(TokenError::InvalidAuthorizationDetails)?
        }
    };
    Ok(Claims {
        edition: ProtocolVersion::V1,
        grants,
        expires_at: Some(exp),
        subject: optional_string(payload, "sub")?,
        client_id: optional_string(payload, "client_id")?,
        token_id: optional_string(payload, "jti")?,
        issuer,
    })
}

fn optional_string(payload: &Map<String, Value>, name: &str) -> Result<Option<String>, TokenError> {
    match payload.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(TokenError::InvalidClaims(format!("{name} is not a string"))),
    }
}

/// Reads `authorization_details`: every Mercure entry must be valid, or none counts.
fn read_details(details: &Value, base: &Url) -> Result<Grants, String> {
    let details = details
        .as_array()
        .ok_or("authorization_details is not an array")?;
    if details.len() > MAX_DETAILS {
        return Err(format!(
            "{} authorization details, the limit is {MAX_DETAILS}",
            details.len()
        ));
    }
    let mut grants = Grants::default();
    let mut matchers = 0;
    for (index, detail) in details.iter().enumerate() {
        let detail = detail
            .as_object()
            .ok_or_else(|| format!("authorization_details[{index}] is not an object"))?;
        match detail.get("type") {
            Some(Value::String(t)) if t == AUTHORIZATION_DETAIL_TYPE => {}
            Some(Value::String(_)) => continue,
            _ => return Err(format!("authorization_details[{index}] has no string type")),
        }
        let at = |what: &str| format!("authorization_details[{index}]: {what}");
        let actions = detail
            .get("actions")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| at("actions must be a non-empty array"))?;
        let (mut publish, mut subscribe) = (false, false);
        for action in actions {
            match action.as_str() {
                Some("publish") => publish = true,
                Some("subscribe") => subscribe = true,
                _ => return Err(at(&format!("unknown action {action}"))),
            }
        }
        let topics = detail
            .get("topics")
            .and_then(Value::as_array)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| at("topics must be a non-empty array"))?;
        if topics.len() > MAX_TOPICS_PER_DETAIL {
            return Err(at(&format!(
                "{} topics, the limit is {MAX_TOPICS_PER_DETAIL}",
                topics.len()
            )));
        }
        matchers += topics.len();
        if matchers > MAX_TOPIC_MATCHERS {
            return Err(format!(
                "more than {MAX_TOPIC_MATCHERS} topic matchers in the token"
            ));
        }
        let topics = topics
            .iter()
            .map(|topic| read_matcher(topic, base).map_err(|e| at(&e)))
            .collect::<Result<Vec<_>, _>>()?;
        if publish {
            grants.publish.extend(topics.iter().cloned());
        }
        if subscribe {
            grants.subscribe.extend(topics.iter().cloned());
        }
        match detail.get("payload") {
            Some(_) if !subscribe => return Err(at("payload without the subscribe action")),
            Some(payload) if !payload.is_object() => {
                return Err(at("payload must be a JSON object"));
            }
            payload if subscribe => grants.payloads.push(PayloadGrant {
                topics,
                payload: payload.cloned(),
            }),
            _ => {}
        }
    }
    Ok(grants)
}

/// One `{match, match_type}` object.
fn read_matcher(topic: &Value, base: &Url) -> Result<TopicMatcher, String> {
    let topic = topic
        .as_object()
        .ok_or("a topic matcher is not an object")?;
    if let Some(unknown) = topic.keys().find(|k| *k != "match" && *k != "match_type") {
        return Err(format!("unknown topic matcher member {unknown:?}"));
    }
    let pattern = match topic.get("match") {
        Some(Value::String(p)) if !p.is_empty() => p,
        _ => return Err("match must be a non-empty string".into()),
    };
    if pattern.len() > MAX_MATCH_BYTES {
        return Err(format!("a match is longer than {MAX_MATCH_BYTES} bytes"));
    }
    if pattern.chars().any(is_forbidden_char) {
        return Err("a match contains a control character".into());
    }
    let match_type = match topic.get("match_type") {
        None => "exact",
        Some(Value::String(t)) => t.as_str(),
        Some(_) => return Err("match_type is not a string".into()),
    };
    if pattern == "*" {
        // The reserved wildcard, whatever the type (which must still be a known one).
        return match match_type {
            "exact" | "urlpattern" => Ok(TopicMatcher::Any),
            other => Err(format!("unknown match_type {other:?}")),
        };
    }
    match match_type {
        "exact" => Ok(TopicMatcher::Exact(pattern.clone())),
        "urlpattern" => UrlPatternMatcher::compile(pattern, base)
            .map(|p| TopicMatcher::UrlPattern(Arc::new(p)))
            .map_err(|e| e.to_string()),
        other => Err(format!("unknown match_type {other:?}")),
    }
}

/// C0, DEL and C1 controls, which no topic may contain.
fn is_forbidden_char(c: char) -> bool {
    c.is_control()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules() -> TokenRules {
        TokenRules {
            protocols: ProtocolSet::default(),
            resource: Some(Url::parse("https://hub.example/.well-known/mercure").unwrap()),
            issuers: vec!["https://app.example".into()],
        }
    }

    fn claims(extra: Value) -> Map<String, Value> {
        let mut base = json!({
            "iss": "https://app.example",
            "aud": "https://hub.example/.well-known/mercure",
            "exp": 2_000_000_000u64,
        });
        base.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        base.as_object().unwrap().clone()
    }

    const NOW: u64 = 1_900_000_000;

    #[test]
    fn v2_grants_come_from_mercure_details() {
        let c = v1_claims(
            &claims(json!({"sub": "alice", "authorization_details": [
                {"type": "other", "actions": {"x": 1}},
                {"type": AUTHORIZATION_DETAIL_TYPE, "actions": ["publish", "subscribe"],
                 "topics": [{"match": "https://example.com/a"},
                            {"match": "/books/:id", "match_type": "urlpattern"}],
                 "payload": {"u": 1}},
                {"type": AUTHORIZATION_DETAIL_TYPE, "actions": ["subscribe"],
                 "topics": [{"match": "*", "match_type": "urlpattern"}]}
            ]})),
            &rules(),
            NOW,
        )
        .unwrap();
        assert_eq!(c.edition, ProtocolVersion::V1);
        assert_eq!(c.subject.as_deref(), Some("alice"));
        assert_eq!(c.grants.publish.len(), 2);
        assert_eq!(c.grants.subscribe.len(), 3);
        assert_eq!(c.grants.subscribe[2], TopicMatcher::Any);
        assert_eq!(c.grants.payload(), Some(&json!({"u": 1})));
        let TopicMatcher::UrlPattern(p) = &c.grants.publish[1] else {
            panic!("not a URL pattern");
        };
        assert!(p.is_match("https://hub.example/books/1"));
    }

    #[test]
    fn v2_one_bad_detail_rejects_the_token() {
        for bad in [
            json!([{"type": AUTHORIZATION_DETAIL_TYPE, "actions": [], "topics": [{"match": "a"}]}]),
            json!([{"type": AUTHORIZATION_DETAIL_TYPE, "actions": ["read"], "topics": [{"match": "a"}]}]),
            json!([{"type": AUTHORIZATION_DETAIL_TYPE, "actions": ["publish"], "topics": ["a"]}]),
            json!([{"type": AUTHORIZATION_DETAIL_TYPE, "actions": ["publish"], "topics": [{"match": ""}]}]),
            json!([{"type": AUTHORIZATION_DETAIL_TYPE, "actions": ["publish"],
                    "topics": [{"match": "a", "match_type": "regex"}]}]),
            json!([{"type": AUTHORIZATION_DETAIL_TYPE, "actions": ["publish"],
                    "topics": [{"match": "a", "matchType": "exact"}]}]),
            json!([{"type": AUTHORIZATION_DETAIL_TYPE, "actions": ["publish"],
                    "topics": [{"match": "https://x/(", "match_type": "urlpattern"}]}]),
            json!([{"type": AUTHORIZATION_DETAIL_TYPE, "actions": ["publish"],
                    "topics": [{"match": "a\u{0}b"}]}]),
            json!([{"type": AUTHORIZATION_DETAIL_TYPE, "actions": ["publish"],
                    "topics": [{"match": "a"}], "payload": {}}]),
            json!([{"type": AUTHORIZATION_DETAIL_TYPE, "actions": ["subscribe"],
                    "topics": [{"match": "a"}], "payload": "not an object"}]),
            json!({"type": AUTHORIZATION_DETAIL_TYPE}),
            json!([{"type": AUTHORIZATION_DETAIL_TYPE, "actions": ["publish"], "topics": [{"match": "a"}]},
                   42]),
        ] {
            let result = v1_claims(
                &claims(json!({"authorization_details": bad})),
                &rules(),
                NOW,
            );
            assert!(
                matches!(result, Err(TokenError::InvalidAuthorizationDetails(_))),
                "{bad}: {result:?}"
            );
        }
    }

    #[test]
    fn v2_limits_on_details() {
        let detail = json!({"type": AUTHORIZATION_DETAIL_TYPE, "actions": ["publish"],
                            "topics": [{"match": "a"}]});
        let many = Value::Array(vec![detail; MAX_DETAILS + 1]);
        assert!(
            v1_claims(
                &claims(json!({"authorization_details": many})),
                &rules(),
                NOW
            )
            .is_err()
        );
        let topics: Vec<Value> = (0..=MAX_TOPICS_PER_DETAIL)
            .map(|i| json!({"match": format!("t{i}")}))
            .collect();
        let wide =
            json!([{"type": AUTHORIZATION_DETAIL_TYPE, "actions": ["publish"], "topics": topics}]);
        assert!(
            v1_claims(
                &claims(json!({"authorization_details": wide})),
                &rules(),
                NOW
            )
            .is_err()
        );
        let long = json!([{"type": AUTHORIZATION_DETAIL_TYPE, "actions": ["publish"],
                           "topics": [{"match": "a".repeat(MAX_MATCH_BYTES + 1)}]}]);
        assert!(
            v1_claims(
                &claims(json!({"authorization_details": long})),
                &rules(),
                NOW
            )
            .is_err()
        );
    }

    #[test]
    fn v2_registered_claims_are_enforced() {
        let r = rules();
        let mut no_exp = claims(json!({}));
        no_exp.remove("exp");
        assert_eq!(v1_claims(&no_exp, &r, NOW), Err(TokenError::MissingExpiry));
        let expired = claims(json!({"exp": NOW}));
        assert_eq!(v1_claims(&expired, &r, NOW), Err(TokenError::Expired));
        let early = claims(json!({"nbf": NOW + NBF_LEEWAY_SECS + 1}));
        assert_eq!(v1_claims(&early, &r, NOW), Err(TokenError::NotYetValid));
        let skewed = claims(json!({"nbf": NOW + NBF_LEEWAY_SECS}));
        assert!(v1_claims(&skewed, &r, NOW).is_ok());
        let other_aud = claims(json!({"aud": "https://other.example/.well-known/mercure"}));
        assert!(matches!(
            v1_claims(&other_aud, &r, NOW),
            Err(TokenError::WrongAudience { .. })
        ));
        let aud_list = claims(json!({"aud": ["x", "https://hub.example/.well-known/mercure"]}));
        assert!(v1_claims(&aud_list, &r, NOW).is_ok());
        let other_iss = claims(json!({"iss": "https://evil.example"}));
        assert!(matches!(
            v1_claims(&other_iss, &r, NOW),
            Err(TokenError::UntrustedIssuer(_))
        ));
        let any_issuer = TokenRules {
            issuers: vec![],
            ..rules()
        };
        assert!(v1_claims(&other_iss, &any_issuer, NOW).is_ok());
        let no_resource = TokenRules {
            resource: None,
            ..rules()
        };
        assert_eq!(
            v1_claims(&claims(json!({})), &no_resource, NOW),
            Err(TokenError::NoResourceIdentifier)
        );
    }

    #[test]
    fn v2_payload_comes_from_the_first_grant_matching_the_subscription() {
        let detail = |topics: Value, payload: Option<Value>| {
            let mut d = json!({"type": AUTHORIZATION_DETAIL_TYPE, "actions": ["subscribe"],
                               "topics": topics});
            if let Some(payload) = payload {
                d["payload"] = payload;
            }
            d
        };
        // The example of draft-08's "Payloads", plus a grant without payload that masks.
        let c = v1_claims(
            &claims(json!({"authorization_details": [
                detail(json!([{"match": "https://example.com/foo"}]), Some(json!({"c": 1}))),
                detail(json!([{"match": "https://example.com/bar/:id", "match_type": "urlpattern"}]),
                       Some(json!({"c": 2}))),
                {"type": AUTHORIZATION_DETAIL_TYPE, "actions": ["publish"],
                 "topics": [{"match": "https://example.com/quiet"}]},
                detail(json!([{"match": "https://example.com/quiet"}]), None),
                detail(json!([{"match": "*"}]), Some(json!({"c": 3}))),
            ]})),
            &rules(),
            NOW,
        )
        .unwrap();
        let g = &c.grants;
        assert_eq!(
            g.payload_for("https://example.com/foo"),
            Some(&json!({"c": 1}))
        );
        // A URL-pattern grant matches the identical pattern, and the topics it covers.
        assert_eq!(
            g.payload_for("https://example.com/bar/:id"),
            Some(&json!({"c": 2}))
        );
        assert_eq!(
            g.payload_for("https://example.com/bar/7"),
            Some(&json!({"c": 2}))
        );
        // `*` is the default for every other subscription...
        assert_eq!(
            g.payload_for("https://example.com/other"),
            Some(&json!({"c": 3}))
        );
        assert_eq!(g.payload_for("*"), Some(&json!({"c": 3})));
        // ...but a first matching grant without payload is not unmasked by it.
        assert_eq!(g.payload_for("https://example.com/quiet"), None);
        // Without a `*` grant, an unmatched subscription has no payload.
        let narrow = v1_claims(
            &claims(json!({"authorization_details": [
                detail(json!([{"match": "a"}]), Some(json!({"c": 1}))),
            ]})),
            &rules(),
            NOW,
        )
        .unwrap();
        assert_eq!(narrow.grants.payload_for("b"), None);
        // A draft-07 payload describes every subscription.
        let draft07 = Grants::from_draft07(MercureClaim {
            payload: Some(json!({"d": 7})),
            ..MercureClaim::default()
        });
        assert_eq!(draft07.payload_for("anything"), Some(&json!({"d": 7})));
    }

    #[test]
    fn v2_typ_names_an_access_token_in_any_case() {
        assert!(is_access_token_type(Some("at+jwt")));
        assert!(is_access_token_type(Some("AT+JWT")));
        assert!(is_access_token_type(Some("application/at+JWT")));
        assert!(!is_access_token_type(Some("JWT")));
        assert!(!is_access_token_type(None));
    }
}

//! Unit tests of [`super`]: where the token is found, which edition the request speaks, and
//! the CSRF guard's origin [R19][R22][V2][V3].

use super::*;
use axum::response::IntoResponse;
use http::HeaderValue;

fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(name, HeaderValue::from_str(value).unwrap());
    }
    map
}

fn authorizer() -> Authorizer {
    Authorizer::new(
        Verifiers {
            publisher: None,
            subscriber: None,
        },
        "mercureAuthorization".into(),
        Vec::new(),
        true,
        AccessSettings::default(),
    )
}

fn found(
    headers: &HeaderMap,
    query: Option<&str>,
    said: Option<ProtocolVersion>,
) -> Option<(String, TokenSource)> {
    authorizer()
        .present(headers, query, said)
        .unwrap()
        .map(|p| (p.token, p.source))
}

/// A token whose header says `typ: at+jwt` (its edition is read before any verification).
fn access_token() -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    let key = jsonwebtoken::EncodingKey::from_secret(b"any key");
    jsonwebtoken::encode(&header, &serde_json::json!({}), &key).unwrap()
}

#[test]
fn r19_header_wins_then_query_then_cookie() {
    let d7 = Some(ProtocolVersion::Draft07);
    let all = headers(&[
        (header::AUTHORIZATION, "Bearer h"),
        (header::COOKIE, "a=b; mercureAuthorization=c"),
    ]);
    let q = Some("authorization=q");
    assert_eq!(found(&all, q, d7), Some(("h".into(), TokenSource::Header)));
    let no_header = headers(&[(header::COOKIE, "mercureAuthorization=c")]);
    assert_eq!(
        found(&no_header, q, d7),
        Some(("q".into(), TokenSource::Query))
    );
    assert_eq!(
        found(&no_header, None, d7),
        Some(("c".into(), TokenSource::Cookie))
    );
    assert_eq!(found(&HeaderMap::new(), None, d7), None);
}

#[test]
fn v2_the_v1_cookie_comes_before_the_draft07_one() {
    let new = access_token();
    let both = headers(&[(
        header::COOKIE,
        &format!("mercureAuthorization=old; __Secure-mercure_access_token={new}"),
    )]);
    let a = authorizer();
    let presented = a.present(&both, None, None).unwrap().unwrap();
    assert_eq!(presented.token, new);
    assert_eq!(presented.edition, ProtocolVersion::V1);
    // A cookie of the other edition than the parameters is skipped, not refused.
    let d7 = Some(ProtocolVersion::Draft07);
    assert_eq!(
        found(&both, None, d7),
        Some(("old".into(), TokenSource::Cookie))
    );
    let old_only = headers(&[(header::COOKIE, "mercureAuthorization=old")]);
    assert_eq!(found(&old_only, None, Some(ProtocolVersion::V1)), None);
}

#[test]
fn v1_a_token_of_the_other_edition_than_the_parameters_is_refused() {
    let a = authorizer();
    let v1_token = headers(&[(header::AUTHORIZATION, &format!("Bearer {}", access_token()))]);
    let d7_token = headers(&[(header::AUTHORIZATION, "Bearer old")]);
    let d7 = Some(ProtocolVersion::Draft07);
    let v1 = Some(ProtocolVersion::V1);
    let refused = |r: Result<Option<Presented>, Rejection>| r.unwrap_err().into_response();
    // A draft-07 answer: a bare challenge, the reason in the body.
    let response = refused(a.present(&v1_token, None, d7));
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    let response = refused(a.present(&d7_token, None, v1));
    assert_eq!(response.status(), 401);
    assert!(
        response.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    // Where the parameters do not tell, the token decides.
    let presented = a.present(&v1_token, None, None).unwrap().unwrap();
    assert_eq!(presented.edition, ProtocolVersion::V1);
    let presented = a.present(&d7_token, None, None).unwrap().unwrap();
    assert_eq!(presented.edition, ProtocolVersion::Draft07);
    // The draft-07 query parameter with an access token on a draft-07 query.
    let query = format!("topic=a&authorization={}", access_token());
    assert!(a.present(&HeaderMap::new(), Some(&query), d7).is_err());
}

#[test]
fn v3_malformed_presentations_of_v1_requests_are_refused() {
    let v1 = Some(ProtocolVersion::V1);
    let d7 = Some(ProtocolVersion::Draft07);
    let a = authorizer();
    let basic = headers(&[(header::AUTHORIZATION, "Basic abc")]);
    assert!(a.present(&basic, None, v1).is_err());
    assert!(a.present(&basic, None, d7).is_err());
    let two = headers(&[
        (header::AUTHORIZATION, "Bearer a"),
        (header::AUTHORIZATION, "Bearer b"),
    ]);
    assert!(a.present(&two, None, v1).is_err());
    let none = HeaderMap::new();
    assert!(a.present(&none, Some("authorization=t"), v1).is_err());
    assert!(a.present(&none, Some("access_token=t"), v1).is_err());
    assert!(a.present(&none, Some("authorization=t"), d7).is_ok());
}

#[test]
fn v3_access_token_parameter_is_refused_for_v1_and_misplaced_for_draft07() {
    let a = authorizer();
    let d7 = Some(ProtocolVersion::Draft07);
    let none = HeaderMap::new();
    assert!(
        a.present(
            &none,
            Some("topic=a&access_token=t"),
            Some(ProtocolVersion::Draft07)
        )
        .unwrap()
        .is_none()
    );
    assert!(
        a.misplaced_token(&none, Some("topic=a&access_token=t"), d7)
            .is_some()
    );
    assert!(
        a.misplaced_token(&none, Some("topic=a&authorization=t"), d7)
            .is_none()
    );
}

#[test]
fn referer_gives_its_origin() {
    assert_eq!(
        origin_of("https://example.com:8443/page?x=1").as_deref(),
        Some("https://example.com:8443")
    );
    assert_eq!(origin_of("nonsense"), None);
}

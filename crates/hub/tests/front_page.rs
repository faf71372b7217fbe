//! The page at `/` (issue 12, item 5), over real TCP: it says what this is, links to the docs
//! and, when the UI is on, to the UI; with the front page off, `/` is a 404.

mod common;

use common::*;
use herald_hub::HubConfig;

async fn front_page(config: HubConfig) -> (u16, String, String) {
    let hub = TestHub::start(config).await;
    let response = hub
        .client
        .get(format!("{}/", hub.base))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

#[tokio::test]
async fn the_front_page_says_what_this_is() {
    let (status, content_type, page) = front_page(config()).await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(page.contains("Mercure"), "{page}");
    assert!(page.contains("/.well-known/mercure"), "{page}");
    assert!(page.contains("https://mercure.rocks/spec"), "{page}");
    // No UI, no link to it.
    assert!(!page.contains("/.well-known/mercure/ui/"), "{page}");
}

#[tokio::test]
async fn the_front_page_links_to_the_ui_when_it_is_on() {
    let (status, _, page) = front_page(HubConfig {
        ui: true,
        ..config()
    })
    .await;
    assert_eq!(status, 200);
    assert!(page.contains("href=\"/.well-known/mercure/ui/\""), "{page}");
}

#[tokio::test]
async fn without_the_front_page_slash_is_not_found() {
    let (status, _, _) = front_page(HubConfig {
        front_page: false,
        ..config()
    })
    .await;
    assert_eq!(status, 404);
}

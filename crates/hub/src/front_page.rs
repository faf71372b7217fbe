//! The page at `/`: what this server is, with links to the web UI (when it is on) and to the
//! documentation, as the reference hub serves one (its conformance suite and many tutorials
//! open `/` first).
//!
//! Static HTML (`front_page.html`, embedded with `include_str!`), with no script or style, so
//! that the router's general `Content-Security-Policy: default-src 'none'` fits it. The UI link
//! is cut out when the UI is off. `HubConfig::front_page` off (`--no-front-page`): `/` is not
//! routed and answers 404 like any unknown path.

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use bytes::Bytes;

use crate::Hub;
use crate::config::HubConfig;

/// The page, with the UI's list item between these markers.
const PAGE: &str = include_str!("front_page.html");
const UI_START: &str = "<!--ui-->";
const UI_END: &str = "<!--/ui-->";

/// The route at `/`, or none when the front page is off.
pub(crate) fn router(config: &HubConfig) -> Router<Hub> {
    if !config.front_page {
        return Router::new();
    }
    let page = if config.ui {
        Bytes::from_static(PAGE.as_bytes())
    } else {
        Bytes::from(without_ui(PAGE))
    };
    Router::new().route(
        "/",
        get(move || {
            let page = page.clone();
            async move { Html(page) }
        }),
    )
}

/// The page without its UI item.
fn without_ui(page: &str) -> String {
    match (page.find(UI_START), page.find(UI_END)) {
        (Some(start), Some(end)) if start < end => {
            format!("{}{}", &page[..start], &page[end + UI_END.len()..])
        }
        _ => page.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ui_item_is_cut_out() {
        let page = without_ui(PAGE);
        assert!(PAGE.contains("/.well-known/mercure/ui/"));
        assert!(!page.contains("/.well-known/mercure/ui/"));
        assert!(page.contains("mercure.rocks/spec"));
    }
}

//! Where the load goes: the server's URLs and request formats ([`Endpoint`], Herald, nchan or
//! Pushpin), and the topic names of one run ([`Layout`]).

use crate::http;
use crate::run::Topics;
use crate::{ServerArgs, Target};

/// The server's URLs and formats.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub target: Target,
    pub addr: std::net::SocketAddr,
    host: String,
    hub_path: String,
    nchan_sub: String,
    nchan_pub: String,
    pushpin_publish: String,
    authorization: Option<String>,
}

/// One publish, before it is written as HTTP/1.1 bytes or sent as an HTTP/2 request.
pub(crate) struct Publish {
    pub path: String,
    pub content_type: &'static str,
    pub authorization: Option<String>,
    pub body: String,
}

impl Endpoint {
    pub(crate) fn new(args: &ServerArgs) -> Result<Endpoint, String> {
        let authorization = match (&args.jwt_key, args.target) {
            (Some(key), Target::Herald) => Some(format!("Bearer {}", crate::publisher_token(key)?)),
            _ => None,
        };
        Ok(Endpoint {
            target: args.target,
            addr: args.addr,
            host: args.addr.to_string(),
            hub_path: args.hub_path.clone(),
            nchan_sub: args.nchan_sub.clone(),
            nchan_pub: args.nchan_pub.clone(),
            pushpin_publish: args.pushpin_publish.clone(),
            authorization,
        })
    }

    /// The same server kind and paths, at another address (another node of a cluster).
    pub(crate) fn at(&self, addr: std::net::SocketAddr) -> Endpoint {
        Endpoint {
            addr,
            host: addr.to_string(),
            ..self.clone()
        }
    }

    pub(crate) fn subscribe_request(
        &self,
        selectors: &[String],
        last_event_id: Option<&str>,
    ) -> Vec<u8> {
        let path = match self.target {
            Target::Herald => {
                let query: Vec<String> = selectors
                    .iter()
                    .map(|s| format!("topic={}", http::encode(s)))
                    .collect();
                format!("{}?{}", self.hub_path, query.join("&"))
            }
            Target::Nchan | Target::Pushpin => {
                format!("{}?id={}", self.nchan_sub, http::encode(&selectors[0]))
            }
        };
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n",
            self.host
        );
        if let Some(id) = last_event_id {
            request.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        request.push_str("\r\n");
        request.into_bytes()
    }

    /// The publish of `data` to `topic` in the server's format.
    pub(crate) fn publish(&self, topic: &str, data: &str, id: Option<&str>) -> Publish {
        let (path, content_type, body) = match self.target {
            Target::Herald => {
                let mut body = format!("topic={}&data={}", http::encode(topic), http::encode(data));
                if let Some(id) = id {
                    body.push_str(&format!("&id={}", http::encode(id)));
                }
                (
                    self.hub_path.clone(),
                    "application/x-www-form-urlencoded",
                    body,
                )
            }
            Target::Nchan => (
                format!("{}?id={}", self.nchan_pub, http::encode(topic)),
                "text/plain",
                data.to_owned(),
            ),
            Target::Pushpin => {
                // One GRIP item; the http-stream content is written to every held stream as
                // is, so it carries the SSE framing itself.
                let mut content = String::new();
                if let Some(id) = id {
                    content.push_str(&format!("id: {id}\n"));
                }
                content.push_str(&format!("data: {data}\n\n"));
                let item = serde_json::json!({
                    "channel": topic,
                    "formats": {"http-stream": {"content": content}},
                });
                (
                    self.pushpin_publish.clone(),
                    "application/json",
                    serde_json::json!({ "items": [item] }).to_string(),
                )
            }
        };
        Publish {
            path,
            content_type,
            authorization: self.authorization.clone(),
            body,
        }
    }

    /// The publish of `data` to `topic` as HTTP/1.1 request bytes.
    pub(crate) fn publish_request(&self, topic: &str, data: &str, id: Option<&str>) -> Vec<u8> {
        let publish = self.publish(topic, data, id);
        let mut request = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            publish.path,
            self.host,
            publish.content_type,
            publish.body.len()
        );
        if let Some(auth) = &publish.authorization {
            request.push_str(&format!("Authorization: {auth}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(&publish.body);
        request.into_bytes()
    }
}

/// Topic names of one run.
pub(crate) struct Layout {
    pub target: Target,
    pub mode: Topics,
    /// Subscribers across all processes (topic numbering).
    pub total: usize,
    pub templates: usize,
    pub run_id: String,
}

impl Layout {
    fn prefix(&self) -> String {
        format!("https://example.com/bench/{}", self.run_id)
    }

    /// The topic of subscriber (or update) number `i`.
    pub(crate) fn topic(&self, i: usize) -> String {
        match (self.target, self.mode) {
            (Target::Nchan | Target::Pushpin, Topics::One) => format!("b{}_all", self.run_id),
            (Target::Nchan | Target::Pushpin, _) => {
                format!("b{}_{}", self.run_id, i % self.total.max(1))
            }
            (Target::Herald, Topics::One) => format!("{}/all", self.prefix()),
            (Target::Herald, Topics::Many) if self.templates > 0 => {
                let i = i % self.total.max(1);
                format!("{}/g{}/rooms/{i}", self.prefix(), i % self.templates)
            }
            (Target::Herald, Topics::Many) => {
                format!("{}/rooms/{}", self.prefix(), i % self.total.max(1))
            }
            (Target::Herald, Topics::Template) => format!("{}/rooms/{i}", self.prefix()),
        }
    }

    pub(crate) fn subscriber(&self, i: usize) -> Vec<String> {
        match self.mode {
            Topics::Template => vec![format!("{}/rooms/{{id}}", self.prefix())],
            _ => vec![self.topic(i)],
        }
    }

    pub(crate) fn template_subscriber(&self, k: usize) -> Vec<String> {
        vec![format!("{}/g{k}/rooms/{{id}}", self.prefix())]
    }

    /// Deliveries expected for `updates` updates, with `local` subscribers (and all template
    /// subscribers) in this process.
    pub(crate) fn expected(&self, updates: usize, local: usize) -> u64 {
        let updates = updates as u64;
        match self.mode {
            Topics::One | Topics::Template => updates * local as u64,
            Topics::Many => updates * (1 + u64::from(self.templates > 0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        server: ServerArgs,
    }

    #[test]
    fn pushpin_publishes_grip_items_carrying_the_sse_framing() {
        let args = Args::parse_from(["x", "--target", "pushpin"]);
        let endpoint = Endpoint::new(&args.server).unwrap();
        let publish = endpoint.publish("b1_all", "123.4.xx", Some("7"));
        assert_eq!(publish.path, "/publish/");
        assert_eq!(publish.content_type, "application/json");
        assert!(publish.authorization.is_none());
        let body: serde_json::Value = serde_json::from_str(&publish.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"items": [{
                "channel": "b1_all",
                "formats": {"http-stream": {"content": "id: 7\ndata: 123.4.xx\n\n"}},
            }]})
        );
        let request =
            String::from_utf8(endpoint.subscribe_request(&["b1_all".into()], None)).unwrap();
        assert!(request.starts_with("GET /sub?id=b1_all HTTP/1.1\r\n"));
    }
}

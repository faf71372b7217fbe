//! [`PatternTable`]: interning patterns by kind and text, and admitting them. Every template and
//! URL pattern a subscription or a token brings is costed against [`TemplateLimits`] before
//! anything is compiled, and the client is charged for the ones it does not already keep alive
//! ([`ClientKey`], [`TemplateLease`]); what is refused is a [`TemplateRefused`] that names the fix
//! (the limits and why, in `selector.rs`).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use herald_protocol::{TemplateSource, TopicSelector, UrlPatternMatcher};
use http::StatusCode;

use super::pattern::{Compiled, Pattern, RESULT_CACHE_BYTES, ResultBudget};
use super::{PatternKey, PatternKind, Selector};
use crate::config::TemplateLimits;
use crate::peer::ClientAddress;
use crate::rejection::Rejection;

/// The hub already tracks as many distinct templates as it allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this hub already tracks {max} distinct topic templates, its limit")]
pub(crate) struct TooManyPatterns {
    pub max: usize,
}

/// Why templates were refused: each answer tells the client what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TemplateRefused {
    #[error(
        "topic template {template:?} is too complex: it would cost {cost} KiB to compile and \
         match, the limit is {limit} KiB; {advice}"
    )]
    TooCostly {
        template: String,
        cost: u64,
        limit: u64,
        advice: &'static str,
    },
    #[error(
        "the {what} hold topic templates that would cost {cost} KiB together, the limit is \
         {limit} KiB per request: use fewer distinct templates, or `*` or exact topics"
    )]
    RequestTooCostly {
        what: &'static str,
        cost: u64,
        limit: u64,
    },
    #[error(
        "too many topic templates open: this client's subscriptions already keep {live} KiB \
         of templates alive, and these would add {cost} KiB past the limit of {limit} KiB; \
         close subscriptions or reuse the same templates"
    )]
    ClientOverBudget { live: u64, cost: u64, limit: u64 },
    #[error(
        "URL pattern {pattern:?} is too complex: it costs {cost} KiB compiled, the limit is \
         {limit} KiB; use fewer or simpler regexp groups"
    )]
    UrlPatternTooCostly {
        pattern: String,
        cost: u64,
        limit: u64,
    },
    /// The regex engine refused a template the cost model allowed (not expected to happen).
    #[error("topic template {template:?} could not be compiled into a matcher: simplify it")]
    Uncompilable { template: String },
    #[error(transparent)]
    TooManyPatterns(#[from] TooManyPatterns),
}

impl From<TemplateRefused> for Rejection {
    fn from(e: TemplateRefused) -> Rejection {
        match e {
            TemplateRefused::TooManyPatterns(e) => e.into(),
            TemplateRefused::ClientOverBudget { .. } => {
                Rejection::new(StatusCode::TOO_MANY_REQUESTS, e.to_string())
            }
            TemplateRefused::TooCostly { .. }
            | TemplateRefused::UrlPatternTooCostly { .. }
            | TemplateRefused::RequestTooCostly { .. }
            | TemplateRefused::Uncompilable { .. } => Rejection::bad_request(e.to_string()),
        }
    }
}

/// Who is charged for the templates a subscription keeps alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ClientKey {
    /// The subscribers without a token from one address.
    Anonymous(ClientAddress),
    /// A hash of the token the subscriber presented (keyed per table, so not guessable).
    Token(u64),
}

/// The distinct templates one client keeps alive, each with how many of its subscriptions use
/// it, and their total cost.
#[derive(Debug, Default)]
pub(super) struct ClientTemplates {
    templates: HashMap<PatternKey, (u64, usize)>,
    cost: u64,
}

pub(super) type Clients = Mutex<HashMap<ClientKey, ClientTemplates>>;

/// Keeps a client charged for its subscription's templates; dropping it (when the subscription
/// ends) gives their cost back.
#[derive(Debug)]
pub(crate) struct TemplateLease {
    clients: Arc<Clients>,
    key: ClientKey,
    templates: Vec<PatternKey>,
}

impl Drop for TemplateLease {
    fn drop(&mut self) {
        if self.templates.is_empty() {
            return;
        }
        let mut clients = self.clients.lock().unwrap();
        let Some(client) = clients.get_mut(&self.key) else {
            return;
        };
        for template in &self.templates {
            if let Some((cost, uses)) = client.templates.get_mut(template) {
                *uses = uses.saturating_sub(1);
                if *uses == 0 {
                    client.cost = client.cost.saturating_sub(*cost);
                    client.templates.remove(template);
                }
            }
        }
        if client.templates.is_empty() {
            clients.remove(&self.key);
        }
    }
}

/// A subscription's selectors, interned and paid for.
#[derive(Debug)]
pub(crate) struct Admitted {
    /// The `topic=` / `match*=` selectors.
    pub selectors: Vec<Selector>,
    /// The token's `mercure.subscribe` selectors.
    pub rights: Vec<crate::grants::Right>,
    /// Keep it as long as the subscription.
    pub lease: TemplateLease,
}

/// Interns patterns by source text, up to a number of distinct live patterns, and keeps the
/// accounts of what each client's templates cost.
///
/// The bound on patterns matters because a publish checks every distinct pattern once: without
/// it, clients allowed to subscribe could make every publish slower by subscribing with many
/// different templates.
#[derive(Debug)]
pub(crate) struct PatternTable {
    patterns: Mutex<HashMap<PatternKey, Weak<Pattern>>>,
    /// How many patterns are live (each one's drop decrements it).
    pub(super) live: Arc<AtomicUsize>,
    max: usize,
    pub(super) results_budget: Arc<ResultBudget>,
    pub(super) clients: Arc<Clients>,
    token_hasher: RandomState,
}

impl PatternTable {
    /// A table allowing at most `max` distinct live patterns.
    pub(crate) fn new(max: usize) -> PatternTable {
        PatternTable::with_result_cache(max, RESULT_CACHE_BYTES)
    }

    /// [`PatternTable::new`] with another cap on cached results.
    pub(super) fn with_result_cache(max: usize, result_cache_bytes: usize) -> PatternTable {
        PatternTable {
            patterns: Mutex::new(HashMap::new()),
            live: Arc::new(AtomicUsize::new(0)),
            max,
            results_budget: Arc::new(ResultBudget {
                used: AtomicUsize::new(0),
                max: result_cache_bytes,
            }),
            clients: Arc::default(),
            token_hasher: RandomState::new(),
        }
    }

    /// The key of the client presenting `token` (none: the anonymous ones at `address`).
    pub(crate) fn client_key(&self, token: Option<&str>, address: ClientAddress) -> ClientKey {
        match token {
            None => ClientKey::Anonymous(address),
            Some(token) => ClientKey::Token(self.token_hasher.hash_one(token)),
        }
    }

    /// Checks a subscription's templates against `limits`, charges `client` for the ones it
    /// does not already keep alive, and only then interns (compiles) them. `selectors` are the
    /// request's, `rights` its token's `mercure.subscribe`.
    pub(crate) fn admit(
        &self,
        client: ClientKey,
        selectors: Vec<TopicSelector>,
        rights: &[herald_protocol::TopicMatcher],
        limits: &TemplateLimits,
    ) -> Result<Admitted, TemplateRefused> {
        let rights = crate::grants::selectors(rights);
        let mut costs = request_costs(&selectors, "topic selectors", limits)?;
        costs.extend(request_costs(
            &rights,
            "token's mercure.subscribe selectors",
            limits,
        )?);
        let lease = self.charge(client, costs, limits)?;
        let rights: Vec<crate::grants::Right> = self
            .intern_checked(rights)?
            .into_iter()
            .map(crate::grants::Right::Selector)
            .collect();
        Ok(Admitted {
            selectors: self.intern_checked(selectors)?,
            rights,
            lease,
        })
    }

    /// Parses, checks against `limits` and interns each of `selectors`, with no client charged:
    /// for selectors used during one request (tokens' grants go through
    /// [`PatternTable::intern_selectors`], see `grants.rs`).
    #[cfg(test)]
    pub(crate) fn intern_all<S: AsRef<str>>(
        &self,
        selectors: &[S],
        limits: &TemplateLimits,
    ) -> Result<Vec<Selector>, TemplateRefused> {
        let selectors: Vec<TopicSelector> = selectors
            .iter()
            .map(|s| TopicSelector::parse(s.as_ref()))
            .collect();
        self.intern_selectors(selectors, limits)
    }

    /// [`PatternTable::intern_all`] for selectors already parsed (a token's grants).
    pub(crate) fn intern_selectors(
        &self,
        selectors: Vec<TopicSelector>,
        limits: &TemplateLimits,
    ) -> Result<Vec<Selector>, TemplateRefused> {
        request_costs(&selectors, "token's selectors", limits)?;
        self.intern_checked(selectors)
    }

    /// Charges `client` for `costs` (template text and cost, distinct), counting only those it
    /// does not keep alive already.
    fn charge(
        &self,
        client: ClientKey,
        costs: HashMap<PatternKey, u64>,
        limits: &TemplateLimits,
    ) -> Result<TemplateLease, TemplateRefused> {
        let mut lease = TemplateLease {
            clients: self.clients.clone(),
            key: client,
            templates: Vec::with_capacity(costs.len()),
        };
        if costs.is_empty() {
            // No account is opened for a client without templates.
            return Ok(lease);
        }
        let mut clients = self.clients.lock().unwrap();
        let account = clients.entry(client).or_default();
        let added: u64 = costs
            .iter()
            .filter(|(template, _)| !account.templates.contains_key(*template))
            .fold(0u64, |sum, (_, cost)| sum.saturating_add(*cost));
        if account.cost.saturating_add(added) > limits.max_client_cost {
            let live = account.cost;
            if account.templates.is_empty() {
                clients.remove(&client);
            }
            return Err(TemplateRefused::ClientOverBudget {
                live: live.div_ceil(1024),
                cost: added.div_ceil(1024),
                limit: limits.max_client_cost / 1024,
            });
        }
        account.cost = account.cost.saturating_add(added);
        for (template, cost) in costs {
            let (_, uses) = account
                .templates
                .entry(template.clone())
                .or_insert((cost, 0));
            *uses = uses.saturating_add(1);
            lease.templates.push(template);
        }
        Ok(lease)
    }

    fn intern_checked(
        &self,
        selectors: Vec<TopicSelector>,
    ) -> Result<Vec<Selector>, TemplateRefused> {
        selectors
            .into_iter()
            .map(|selector| {
                Ok(match selector {
                    TopicSelector::Any => Selector::Any,
                    TopicSelector::Exact(exact) => Selector::Exact(exact.into_boxed_str()),
                    TopicSelector::Template(template) => Selector::Pattern(self.pattern(template)?),
                    TopicSelector::UrlPattern(pattern) => {
                        Selector::Pattern(self.url_pattern(pattern)?)
                    }
                })
            })
            .collect()
    }

    /// The live pattern of `template`'s text, or a new one compiled from it.
    fn pattern(&self, template: TemplateSource) -> Result<Arc<Pattern>, TemplateRefused> {
        let key = PatternKey::new(PatternKind::Template, template.as_str());
        if let Some(existing) = self.live_pattern(&key)? {
            return Ok(existing);
        }
        // Compiled without the lock, so that other subscriptions are not held up; the caller
        // bounded its cost. Two requests racing for the same new template may both compile it,
        // and the first one in wins.
        let compiled = template.compile().map_err(|e| {
            tracing::debug!(template = template.as_str(), "template not compiled: {e}");
            TemplateRefused::Uncompilable {
                template: shortened(template.as_str()),
            }
        })?;
        self.insert(key, Compiled::Template(compiled))
    }

    /// The live pattern of `pattern`'s text, or this one (URL patterns are compiled, within
    /// bounds, when the request is read).
    fn url_pattern(
        &self,
        pattern: Arc<UrlPatternMatcher>,
    ) -> Result<Arc<Pattern>, TemplateRefused> {
        let key = PatternKey::new(PatternKind::UrlPattern, pattern.as_str());
        if let Some(existing) = self.live_pattern(&key)? {
            return Ok(existing);
        }
        self.insert(key, Compiled::UrlPattern(pattern))
    }

    /// Interns a compiled pattern, unless another request did first.
    fn insert(&self, key: PatternKey, compiled: Compiled) -> Result<Arc<Pattern>, TemplateRefused> {
        let mut patterns = self.patterns.lock().unwrap();
        if let Some(existing) = patterns.get(&key).and_then(Weak::upgrade) {
            return Ok(existing);
        }
        // Drop the entries of patterns nobody uses any more before the table grows, so that it
        // stays proportional to the live patterns (amortized: only when it would reallocate).
        if patterns.len() == patterns.capacity() {
            patterns.retain(|_, weak| weak.strong_count() > 0);
        }
        let pattern = Arc::new(Pattern::new(
            key.clone(),
            compiled,
            self.live.clone(),
            self.results_budget.clone(),
        ));
        patterns.insert(key, Arc::downgrade(&pattern));
        Ok(pattern)
    }

    /// The live pattern of `source`, if any; an error when there is none and the table is full.
    fn live_pattern(&self, key: &PatternKey) -> Result<Option<Arc<Pattern>>, TooManyPatterns> {
        let patterns = self.patterns.lock().unwrap();
        if let Some(existing) = patterns.get(key).and_then(Weak::upgrade) {
            return Ok(Some(existing));
        }
        if self.live.load(Ordering::Relaxed) >= self.max {
            return Err(TooManyPatterns { max: self.max });
        }
        Ok(None)
    }
}

/// The distinct templates of `selectors` with their costs, each within `limits.max_cost` and
/// all within `limits.max_request_cost`.
fn request_costs(
    selectors: &[TopicSelector],
    what: &'static str,
    limits: &TemplateLimits,
) -> Result<HashMap<PatternKey, u64>, TemplateRefused> {
    let mut costs = HashMap::new();
    let mut total: u64 = 0;
    for selector in selectors {
        let (key, cost) = match selector {
            TopicSelector::Template(template) => {
                let cost = template.cost().bytes();
                if cost > limits.max_cost {
                    return Err(too_costly(template, limits.max_cost));
                }
                (
                    PatternKey::new(PatternKind::Template, template.as_str()),
                    cost,
                )
            }
            TopicSelector::UrlPattern(pattern) => {
                let cost = pattern.cost();
                if cost > limits.max_cost {
                    return Err(TemplateRefused::UrlPatternTooCostly {
                        pattern: shortened(pattern.as_str()),
                        cost: cost.div_ceil(1024),
                        limit: limits.max_cost / 1024,
                    });
                }
                (
                    PatternKey::new(PatternKind::UrlPattern, pattern.as_str()),
                    cost,
                )
            }
            TopicSelector::Any | TopicSelector::Exact(_) => continue,
        };
        if costs.insert(key, cost).is_none() {
            total = total.saturating_add(cost);
        }
    }
    if total > limits.max_request_cost {
        return Err(TemplateRefused::RequestTooCostly {
            what,
            cost: total.div_ceil(1024),
            limit: limits.max_request_cost / 1024,
        });
    }
    Ok(costs)
}

fn too_costly(template: &TemplateSource, limit: u64) -> TemplateRefused {
    TemplateRefused::TooCostly {
        template: shortened(template.as_str()),
        cost: template.cost().bytes().div_ceil(1024),
        limit: limit / 1024,
        advice: template.cost().advice(),
    }
}

/// The first characters of a template, to name it in an answer without echoing 500 KB.
fn shortened(text: &str) -> String {
    const SHOWN: usize = 60;
    match text.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

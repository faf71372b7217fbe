//! Which source set a setting, so that a refusal names what the user actually wrote.
//!
//! `ConfigError` names a setting by its flag (`heartbeat`). A user who wrote
//! `HERALD_HEARTBEAT=5x`, a `heartbeat` key in the `--config` file, or `heartbeat 5x` in
//! `MERCURE_EXTRA_DIRECTIVES` looks for that, so [`Origins::annotate`] adds it to the problem:
//! `invalid setting heartbeat: set by HERALD_HEARTBEAT: "5x" is not a duration ...`. The order
//! of the lookup is the precedence of the sources (flag, environment, file, Mercure).

use std::collections::HashMap;
use std::path::Path;

use clap::{Args, Command};
use herald_hub::ConfigError;

use crate::settings::Settings;

#[derive(Debug, Default)]
pub(crate) struct Origins {
    /// The `--config` file and the keys it sets.
    file: Option<(String, Vec<String>)>,
    /// Settings set by the reference hub's configuration, and where.
    mercure: HashMap<&'static str, String>,
}

impl Origins {
    pub(crate) fn new(file: Option<&Path>, mercure: HashMap<&'static str, String>) -> Origins {
        let file = file.map(|path| {
            let keys = std::fs::read_to_string(path)
                .ok()
                .and_then(|text| text.parse::<toml::Table>().ok())
                .map(|table| table.keys().cloned().collect())
                .unwrap_or_default();
            (path.display().to_string(), keys)
        });
        Origins { file, mercure }
    }

    /// `e` with where its setting came from, unless it was the flag itself.
    pub(crate) fn annotate(&self, mut e: ConfigError) -> ConfigError {
        if let Some(origin) = self.origin(e.setting) {
            e.problem = format!("set by {origin}: {}", e.problem);
        }
        e
    }

    fn origin(&self, setting: &str) -> Option<String> {
        let flag = format!("--{setting}");
        let on_command_line =
            std::env::args().any(|arg| arg == flag || arg.starts_with(&format!("{flag}=")));
        if on_command_line {
            return None;
        }
        if let Some(var) = env_var_of(setting)
            && std::env::var_os(&var).is_some_and(|v| !v.is_empty())
        {
            return Some(var);
        }
        if let Some((path, keys)) = &self.file
            && keys.iter().any(|k| k == setting)
        {
            return Some(format!("the key {setting} of {path}"));
        }
        self.mercure.get(setting).cloned()
    }
}

/// The environment variable of `setting`'s flag, read from the flags' own definitions.
fn env_var_of(setting: &str) -> Option<String> {
    let command = Settings::augment_args(Command::new("serve"));
    command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(setting))
        .and_then(|arg| arg.get_env())
        .map(|var| var.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_know_their_variables() {
        assert_eq!(env_var_of("heartbeat").as_deref(), Some("HERALD_HEARTBEAT"));
        assert_eq!(
            env_var_of("publisher-jwt-key").as_deref(),
            Some("MERCURE_PUBLISHER_JWT_KEY")
        );
        assert_eq!(env_var_of("no-such-flag"), None);
    }

    #[test]
    fn a_mercure_directive_is_named() {
        let origins = Origins::new(
            None,
            HashMap::from([(
                "cookie-name",
                "MERCURE_EXTRA_DIRECTIVES (line 1)".to_owned(),
            )]),
        );
        let e = origins.annotate(ConfigError::new("cookie-name", "bad", "fix"));
        assert_eq!(e.problem, "set by MERCURE_EXTRA_DIRECTIVES (line 1): bad");
    }
}

//! Reading one setting's value: algorithms, keys, durations, counts and sizes, each with an
//! error that names the setting and says how to write it.

use std::time::Duration;

use herald_hub::ConfigError;
use herald_protocol::Algorithm;

use crate::settings::SettingError;

pub(crate) fn algorithm(
    setting: &'static str,
    text: Option<&str>,
) -> Result<Algorithm, SettingError> {
    let Some(text) = text else {
        return Ok(Algorithm::HS256);
    };
    text.parse::<Algorithm>().map_err(|_| {
        ConfigError::new(
            setting,
            format!("{text:?} is not a supported algorithm"),
            "use one of HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, \
             ES384, EdDSA",
        )
    })
}

/// A key given inline, or `@path` for a file.
pub(crate) fn read_key(setting: &'static str, value: &str) -> Result<Vec<u8>, SettingError> {
    match value.strip_prefix('@') {
        Some(path) => std::fs::read(path).map_err(|e| {
            ConfigError::new(
                setting,
                format!("cannot read key file {path}: {e}"),
                "check the path after @, or give the key itself",
            )
        }),
        None => Ok(value.as_bytes().to_vec()),
    }
}

/// A duration where `0s` means "off".
pub(crate) fn optional_duration(
    setting: &'static str,
    text: &Option<String>,
    default: Option<Duration>,
) -> Result<Option<Duration>, SettingError> {
    let Some(text) = text else {
        return Ok(default);
    };
    let duration = humantime::parse_duration(text.trim()).map_err(|e| {
        ConfigError::new(
            setting,
            format!("{text:?} is not a duration ({e})"),
            "write it like 40s, 2m, 1h30m, or 0s to disable",
        )
    })?;
    Ok((!duration.is_zero()).then_some(duration))
}

pub(crate) fn count(
    setting: &'static str,
    text: &Option<String>,
    default: usize,
) -> Result<usize, SettingError> {
    let Some(text) = text else {
        return Ok(default);
    };
    text.trim().replace('_', "").parse().map_err(|_| {
        ConfigError::new(
            setting,
            format!("{text:?} is not a whole number"),
            "write a number such as 10000",
        )
    })
}

/// A byte size: a number with an optional unit (B, KB, KiB, MB, MiB, GB, GiB).
pub(crate) fn size(
    setting: &'static str,
    text: &Option<String>,
    default: usize,
) -> Result<usize, SettingError> {
    let Some(text) = text else {
        return Ok(default);
    };
    parse_size(text).ok_or_else(|| {
        ConfigError::new(
            setting,
            format!("{text:?} is not a size"),
            "write a number of bytes with an optional unit, e.g. 65536, 512KiB or 1MiB",
        )
    })
}

pub(crate) fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number.parse().ok()?;
    let multiplier = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1000,
        "kib" => 1024,
        "mb" | "m" => 1000 * 1000,
        "mib" => 1024 * 1024,
        "gb" | "g" => 1000 * 1000 * 1000,
        "gib" => 1024 * 1024 * 1024,
        _ => return None,
    };
    number.checked_mul(multiplier)
}

/// The words a boolean environment variable may hold, as the reference hub's image and most
/// container tooling write them.
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "y" | "t" => Some(true),
        "0" | "false" | "no" | "off" | "n" | "f" | "" => Some(false),
        _ => None,
    }
}

/// The value parser of every on/off flag of `herald serve`: `--anonymous` alone means on, and
/// its environment variable may say `1/0/true/false/yes/no/on/off`. A flag without a value
/// cannot be wrong, so a bad value always comes from the variable, which the error names.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EnvBool;

impl clap::builder::TypedValueParser for EnvBool {
    type Value = bool;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<bool, clap::Error> {
        let text = value.to_string_lossy();
        parse_bool(&text).ok_or_else(|| {
            let flag = arg.and_then(|a| a.get_long()).unwrap_or("?");
            let source = match arg.and_then(|a| a.get_env()) {
                Some(var) => format!("{}={text:?}", var.to_string_lossy()),
                None => format!("--{flag}={text:?}"),
            };
            clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!(
                    "invalid setting {flag}: {source} is not on or off; write 1, true, yes or on \
                     to turn it on, 0, false, no or off to turn it off\n"
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536"), Some(65536));
        assert_eq!(parse_size("1MiB"), Some(1 << 20));
        assert_eq!(parse_size("2 kb"), Some(2000));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("1 parsec"), None);
    }

    #[test]
    fn booleans_in_every_usual_spelling() {
        for on in ["1", "true", "TRUE", "yes", "on", " On "] {
            assert_eq!(parse_bool(on), Some(true), "{on}");
        }
        for off in ["0", "false", "no", "off", "False"] {
            assert_eq!(parse_bool(off), Some(false), "{off}");
        }
        assert_eq!(parse_bool("maybe"), None);
        assert_eq!(parse_bool("2"), None);
    }
}

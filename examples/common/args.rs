//! Command-line flags for the examples: every flag must be known and every
//! value must parse, or the example prints its usage and exits with 2.

use std::str::FromStr;

/// The parsed command line.
pub struct Args {
    usage: &'static str,
    given: Vec<(String, Option<String>)>,
    positional: Vec<String>,
}

impl Args {
    /// Parses the command line against `spec` (each flag, and whether it
    /// takes a value). `-h`/`--help` print the usage and exit with 0.
    pub fn parse(usage: &'static str, spec: &[(&str, bool)]) -> Args {
        Self::parse_with(usage, spec, 0)
    }

    /// Like [`parse`](Self::parse), also taking up to `max` arguments that
    /// are not flags ([`positional`](Self::positional)).
    pub fn parse_with(usage: &'static str, spec: &[(&str, bool)], max: usize) -> Args {
        Self::parse_from(usage, spec, max, std::env::args().skip(1))
    }

    fn parse_from(
        usage: &'static str,
        spec: &[(&str, bool)],
        max: usize,
        mut args: impl Iterator<Item = String>,
    ) -> Args {
        let mut given = Vec::new();
        let mut positional = Vec::new();
        while let Some(a) = args.next() {
            if a == "-h" || a == "--help" {
                println!("{usage}");
                std::process::exit(0);
            }
            if !a.starts_with('-') && positional.len() < max {
                positional.push(a);
                continue;
            }
            let Some(&(_, takes)) = spec.iter().find(|(name, _)| *name == a) else {
                fail(usage, &format!("unknown argument {a:?}"));
            };
            let value = if takes {
                match args.next() {
                    Some(v) => Some(v),
                    None => fail(usage, &format!("{a} needs a value")),
                }
            } else {
                None
            };
            given.push((a, value));
        }
        Args {
            usage,
            given,
            positional,
        }
    }

    /// The arguments that are not flags, in order.
    pub fn positional(&self) -> &[String] {
        &self.positional
    }

    /// Prints `msg` and the usage, and exits with 2.
    pub fn fail(&self, msg: &str) -> ! {
        fail(self.usage, msg)
    }

    /// The value of `name`, parsed; exits with the usage if it does not
    /// parse.
    pub fn value<T: FromStr>(&self, name: &str) -> Option<T> {
        let (_, v) = self.given.iter().rev().find(|(n, _)| n == name)?;
        let v = v.as_deref().unwrap_or_default();
        match v.parse() {
            Ok(t) => Some(t),
            Err(_) => fail(self.usage, &format!("{name} {v}: not a valid value")),
        }
    }

    /// The value of `name`, which must be one of `choices`.
    pub fn choice(&self, name: &str, choices: &[&'static str]) -> Option<&'static str> {
        let v: String = self.value(name)?;
        match choices.iter().find(|c| **c == v) {
            Some(c) => Some(c),
            None => fail(
                self.usage,
                &format!("{name} {v}: expected one of {}", choices.join(", ")),
            ),
        }
    }

    /// Whether the flag `name` was given.
    pub fn flag(&self, name: &str) -> bool {
        self.given.iter().any(|(n, _)| n == name)
    }
}

fn fail(usage: &str, msg: &str) -> ! {
    eprintln!("error: {msg}\n\n{usage}");
    std::process::exit(2);
}

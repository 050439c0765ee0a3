//! The `Set-Cookie` a server puts on each handshake (the official `cookie`
//! option), so that a load balancer can send the session's later polling
//! requests to the same server (sticky sessions). The cookie's value is the
//! session id.

use std::time::Duration;

/// The handshake cookie, with the official server's defaults: name `io`,
/// path `/`, `HttpOnly`, `SameSite=Lax`.
///
/// ```
/// use wsio::engineio::Cookie;
/// assert_eq!(Cookie::default().header("SID"), "io=SID; Path=/; HttpOnly; SameSite=Lax");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Cookie {
    /// The cookie's name. Default `io`.
    pub name: String,
    /// `Max-Age`, in whole seconds. Default none (a session cookie).
    pub max_age: Option<Duration>,
    /// `Domain`. Default none.
    pub domain: Option<String>,
    /// `Path`. Default `/`.
    pub path: Option<String>,
    /// `HttpOnly`. Default on.
    pub http_only: bool,
    /// `Secure`. Default off.
    pub secure: bool,
    /// `Partitioned`. Default off.
    pub partitioned: bool,
    /// `SameSite`. Default `Lax`.
    pub same_site: Option<SameSite>,
}

/// The `SameSite` attribute of a cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=Lax`.
    Lax,
    /// `SameSite=None`.
    None,
}

impl Default for Cookie {
    fn default() -> Self {
        Cookie {
            name: "io".into(),
            max_age: None,
            domain: None,
            path: Some("/".into()),
            http_only: true,
            secure: false,
            partitioned: false,
            same_site: Some(SameSite::Lax),
        }
    }
}

impl Cookie {
    /// A cookie named `name`, with the other defaults.
    pub fn named(name: &str) -> Self {
        Cookie {
            name: name.to_owned(),
            ..Cookie::default()
        }
    }

    /// The `Set-Cookie` value for session `sid`, attributes in the order
    /// the official server's `cookie` package writes them. Characters that
    /// could end the field or the attribute (controls, spaces, `;`) are
    /// left out of the configured strings.
    pub fn header(&self, sid: &str) -> String {
        let mut out = format!("{}={}", clean(&self.name), clean(sid));
        if let Some(age) = self.max_age {
            out.push_str(&format!("; Max-Age={}", age.as_secs()));
        }
        if let Some(d) = &self.domain {
            out.push_str(&format!("; Domain={}", clean(d)));
        }
        if let Some(p) = &self.path {
            out.push_str(&format!("; Path={}", clean(p)));
        }
        if self.http_only {
            out.push_str("; HttpOnly");
        }
        if self.secure {
            out.push_str("; Secure");
        }
        if self.partitioned {
            out.push_str("; Partitioned");
        }
        match self.same_site {
            Some(SameSite::Strict) => out.push_str("; SameSite=Strict"),
            Some(SameSite::Lax) => out.push_str("; SameSite=Lax"),
            Some(SameSite::None) => out.push_str("; SameSite=None"),
            None => {}
        }
        out
    }
}

fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() && *c != ';' && *c != ',')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_as_the_official_server_writes_them() {
        // Both checked against socket.io 4.8.4 (engine.io 6.6.4, cookie 0.7).
        assert_eq!(
            Cookie::default().header("dwFCPt3Yyo0jGss1AAAA"),
            "io=dwFCPt3Yyo0jGss1AAAA; Path=/; HttpOnly; SameSite=Lax"
        );
        let c = Cookie {
            name: "srv".into(),
            max_age: Some(Duration::from_secs(100)),
            domain: Some("a.b".into()),
            path: Some("/x".into()),
            http_only: false,
            secure: true,
            partitioned: false,
            same_site: Some(SameSite::Strict),
        };
        assert_eq!(
            c.header("Hfs1_ERdIrhrsZpJAAAA"),
            "srv=Hfs1_ERdIrhrsZpJAAAA; Max-Age=100; Domain=a.b; Path=/x; Secure; SameSite=Strict"
        );
        let evil = Cookie::named("a\r\nX-Evil: 1; b");
        assert_eq!(
            evil.header("s"),
            "aX-Evil:1b=s; Path=/; HttpOnly; SameSite=Lax"
        );
    }
}

//! Negotiating permessage-deflate (RFC 7692 sections 5 and 7.1), both roles.
//!
//! The server reads the client's offers and answers the first one it can
//! accept ([`accept_offer`]); the client builds its offer from its
//! [`DeflateConfig`] ([`DeflateConfig::offer`]) and checks the server's
//! answer ([`Offer::verify`]). Both end with the same [`Params`].

use std::fmt::Write as _;

use super::header::{Param, parse_extensions};
use super::{DeflateConfig, NegotiationError, Params};

/// The extension's registered name (RFC 7692 section 7).
pub const EXTENSION_NAME: &str = "permessage-deflate";

const SERVER_NO_CONTEXT_TAKEOVER: &str = "server_no_context_takeover";
const CLIENT_NO_CONTEXT_TAKEOVER: &str = "client_no_context_takeover";
const SERVER_MAX_WINDOW_BITS: &str = "server_max_window_bits";
const CLIENT_MAX_WINDOW_BITS: &str = "client_max_window_bits";

/// The parameters of one offer or response, checked for what both allow:
/// known names, no duplicates, valid values (RFC 7692 section 7, the first
/// three conditions of each list).
#[derive(Debug, Default)]
struct Parsed {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value, which only an offer may do.
    client_max_window_bits: Option<Option<u8>>,
}

/// A window size: a decimal integer from 8 to 15 without leading zeroes
/// (RFC 7692 sections 7.1.2.1 and 7.1.2.2).
fn window_bits(value: &str) -> Option<u8> {
    match value {
        "8" => Some(8),
        "9" => Some(9),
        "10" => Some(10),
        "11" => Some(11),
        "12" => Some(12),
        "13" => Some(13),
        "14" => Some(14),
        "15" => Some(15),
        _ => None,
    }
}

fn parse_params(params: &[Param<'_>], is_offer: bool) -> Result<Parsed, NegotiationError> {
    let mut p = Parsed::default();
    let mut seen = [false; 4];
    for param in params {
        let (slot, name) = match param.name {
            SERVER_NO_CONTEXT_TAKEOVER => (0, SERVER_NO_CONTEXT_TAKEOVER),
            CLIENT_NO_CONTEXT_TAKEOVER => (1, CLIENT_NO_CONTEXT_TAKEOVER),
            SERVER_MAX_WINDOW_BITS => (2, SERVER_MAX_WINDOW_BITS),
            CLIENT_MAX_WINDOW_BITS => (3, CLIENT_MAX_WINDOW_BITS),
            other => return Err(NegotiationError::UnknownParameter(other.to_owned())),
        };
        if std::mem::replace(&mut seen[slot], true) {
            return Err(NegotiationError::DuplicateParameter(name));
        }
        let value = param.value.as_deref();
        let bad = NegotiationError::InvalidValue(name);
        match slot {
            0 | 1 => {
                if value.is_some() {
                    return Err(bad);
                }
                if slot == 0 {
                    p.server_no_context_takeover = true;
                } else {
                    p.client_no_context_takeover = true;
                }
            }
            2 => p.server_max_window_bits = Some(value.and_then(window_bits).ok_or(bad)?),
            _ => {
                p.client_max_window_bits = Some(match value {
                    None if is_offer => None,
                    None => return Err(bad),
                    Some(v) => Some(window_bits(v).ok_or(bad)?),
                });
            }
        }
    }
    Ok(p)
}

/// A server's acceptance of one permessage-deflate offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// What both ends use from now on.
    pub params: Params,
    /// The value of the `Sec-WebSocket-Extensions` field of the 101 reply.
    pub response: String,
}

/// Server side: picks the first permessage-deflate offer among the values
/// of the request's `Sec-WebSocket-Extensions` fields that `config` can
/// accept, and says what to answer (RFC 7692 sections 5 and 7.1).
///
/// * `Ok(None)`: compression is disabled in `config`, or no offer is
///   acceptable; answer without the extension and the connection goes on
///   uncompressed.
/// * `Err(NegotiationError::Syntax)`: the header is not an extension list
///   (RFC 6455 section 9.1); answer 400 ([`NegotiationError::status`]).
///
/// An offer is declined (section 7) when it has a parameter this extension
/// does not define, a parameter twice, or a bad value (window bits outside
/// 8..=15 or with leading zeroes, a value on a `*_no_context_takeover`,
/// `server_max_window_bits` without one). It is also declined when
/// `config.client_max_window_bits` is below 15 and the offer lacks
/// `client_max_window_bits`: the server cannot make that client use a
/// smaller window (section 7.1.2.2), as npm `ws` does. Everything else an
/// offer asks for is granted: the server's window is the smaller of the
/// offer's and the configured one, and context takeover is given up on
/// either side if either the offer or `config` says so. The response
/// repeats `server_max_window_bits` whenever the offer had it (section
/// 7.1.2.1: that is how it is accepted).
///
/// ```
/// use wsio::ws::deflate::{accept_offer, DeflateConfig, Params};
/// let config = DeflateConfig::default().enabled(true).client_max_window_bits(10);
/// let offers = [&b"permessage-deflate; server_max_window_bits=9, permessage-deflate; client_max_window_bits"[..]];
/// let accepted = accept_offer(&config, offers).unwrap().unwrap();
/// assert_eq!(accepted.response, "permessage-deflate; client_max_window_bits=10");
/// assert_eq!(accepted.params.client_max_window_bits, 10);
/// ```
pub fn accept_offer<'a, I>(
    config: &DeflateConfig,
    values: I,
) -> Result<Option<Accepted>, NegotiationError>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    if !config.enabled {
        return Ok(None);
    }
    let offers = parse_extensions(values)?;
    let ours_server = config.server_max_window_bits.clamp(8, 15);
    let ours_client = config.client_max_window_bits.clamp(8, 15);
    for offer in offers.iter().filter(|e| e.name == EXTENSION_NAME) {
        let Ok(p) = parse_params(&offer.params, true) else {
            continue;
        };
        let client_bits = match p.client_max_window_bits {
            None if ours_client < 15 => continue,
            None => 15,
            Some(None) => ours_client,
            Some(Some(theirs)) => theirs.min(ours_client),
        };
        let params = Params {
            server_no_context_takeover: p.server_no_context_takeover
                || config.server_no_context_takeover,
            client_no_context_takeover: p.client_no_context_takeover
                || config.client_no_context_takeover,
            server_max_window_bits: p.server_max_window_bits.unwrap_or(15).min(ours_server),
            client_max_window_bits: client_bits,
        };
        let mut response = String::from(EXTENSION_NAME);
        if params.server_no_context_takeover {
            response.push_str("; server_no_context_takeover");
        }
        if params.client_no_context_takeover {
            response.push_str("; client_no_context_takeover");
        }
        if p.server_max_window_bits.is_some() || params.server_max_window_bits < 15 {
            let _ = write!(
                response,
                "; server_max_window_bits={}",
                params.server_max_window_bits
            );
        }
        if p.client_max_window_bits.is_some() && client_bits < 15 {
            let _ = write!(response, "; client_max_window_bits={client_bits}");
        }
        return Ok(Some(Accepted { params, response }));
    }
    Ok(None)
}

/// What a client may say about the size of its own window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientWindow {
    /// Nothing: the server may not limit the client's window.
    NotOffered,
    /// `client_max_window_bits` without a value: the server may choose.
    ServerChooses,
    /// `client_max_window_bits=N`: the client uses at most `N` bits, and
    /// the server may ask for fewer.
    AtMost(u8),
}

/// A client's permessage-deflate offer, kept to check the server's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// Ask the server not to use context takeover.
    pub server_no_context_takeover: bool,
    /// Tell the server the client will not use context takeover.
    pub client_no_context_takeover: bool,
    /// Limit the server's window to this many bits (8..=15).
    pub server_max_window_bits: Option<u8>,
    /// What the client says about its own window.
    pub client_max_window_bits: ClientWindow,
}

impl DeflateConfig {
    /// Client side: the offer this configuration makes, or `None` when
    /// compression is disabled. A window below 15 bits is asked for with
    /// its parameter; `client_max_window_bits` is always offered (with no
    /// value at 15 bits) so the server may pick the client's window, as
    /// browsers and npm `ws` do.
    ///
    /// ```
    /// use wsio::ws::deflate::DeflateConfig;
    /// let offer = DeflateConfig::default().enabled(true).server_max_window_bits(12).offer().unwrap();
    /// assert_eq!(offer.header_value(), "permessage-deflate; server_max_window_bits=12; client_max_window_bits");
    /// ```
    pub fn offer(&self) -> Option<Offer> {
        if !self.enabled {
            return None;
        }
        let server = self.server_max_window_bits.clamp(8, 15);
        let client = self.client_max_window_bits.clamp(8, 15);
        Some(Offer {
            server_no_context_takeover: self.server_no_context_takeover,
            client_no_context_takeover: self.client_no_context_takeover,
            server_max_window_bits: (server < 15).then_some(server),
            client_max_window_bits: if client < 15 {
                ClientWindow::AtMost(client)
            } else {
                ClientWindow::ServerChooses
            },
        })
    }
}

impl Offer {
    /// The value of the request's `Sec-WebSocket-Extensions` field.
    pub fn header_value(&self) -> String {
        let mut s = String::from(EXTENSION_NAME);
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        if let Some(bits) = self.server_max_window_bits {
            let _ = write!(s, "; server_max_window_bits={bits}");
        }
        match self.client_max_window_bits {
            ClientWindow::NotOffered => {}
            ClientWindow::ServerChooses => s.push_str("; client_max_window_bits"),
            ClientWindow::AtMost(bits) => {
                let _ = write!(s, "; client_max_window_bits={bits}");
            }
        }
        s
    }

    /// Checks the server's answer: the values of the response's
    /// `Sec-WebSocket-Extensions` fields (RFC 7692 section 7).
    ///
    /// `Ok(None)`: the server declined, the connection is uncompressed.
    /// Any error fails the handshake (the client must _Fail the WebSocket
    /// Connection_): a malformed header, an extension other than one
    /// permessage-deflate, a parameter unknown or repeated or with a bad
    /// value, `client_max_window_bits` when not offered or without a value,
    /// a window larger than offered, or an offered
    /// `server_no_context_takeover` or `server_max_window_bits` left out
    /// (sections 7.1.1.1 and 7.1.2.1: the server accepts those by
    /// repeating them).
    ///
    /// ```
    /// use wsio::ws::deflate::{DeflateConfig, NegotiationError};
    /// let offer = DeflateConfig::default().enabled(true).offer().unwrap();
    /// let params = offer.verify([&b"permessage-deflate; client_max_window_bits=9"[..]]).unwrap().unwrap();
    /// assert_eq!((params.client_max_window_bits, params.server_max_window_bits), (9, 15));
    /// assert_eq!(offer.verify([&b"permessage-deflate; x=1"[..]]),
    ///            Err(NegotiationError::UnknownParameter("x".into())));
    /// ```
    pub fn verify<'a, I>(&self, values: I) -> Result<Option<Params>, NegotiationError>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let exts = parse_extensions(values)?;
        let ext = match exts.as_slice() {
            [] => return Ok(None),
            [ext] if ext.name == EXTENSION_NAME => ext,
            [ext] => return Err(NegotiationError::UnexpectedExtension(ext.name.to_owned())),
            [_, second, ..] => {
                return Err(NegotiationError::UnexpectedExtension(
                    second.name.to_owned(),
                ));
            }
        };
        let p = parse_params(&ext.params, false)?;
        if self.server_no_context_takeover && !p.server_no_context_takeover {
            return Err(NegotiationError::MissingParameter(
                SERVER_NO_CONTEXT_TAKEOVER,
            ));
        }
        let server_bits = match (self.server_max_window_bits, p.server_max_window_bits) {
            (Some(offered), Some(got)) if got > offered => {
                return Err(NegotiationError::WindowTooLarge(SERVER_MAX_WINDOW_BITS));
            }
            (Some(_), None) => {
                return Err(NegotiationError::MissingParameter(SERVER_MAX_WINDOW_BITS));
            }
            (_, got) => got.unwrap_or(15),
        };
        let client_bits = match (
            self.client_max_window_bits,
            p.client_max_window_bits.flatten(),
        ) {
            (ClientWindow::NotOffered, Some(_)) => {
                return Err(NegotiationError::NotOffered(CLIENT_MAX_WINDOW_BITS));
            }
            (ClientWindow::AtMost(offered), Some(got)) if got > offered => {
                return Err(NegotiationError::WindowTooLarge(CLIENT_MAX_WINDOW_BITS));
            }
            (_, Some(got)) => got,
            (ClientWindow::AtMost(offered), None) => offered,
            (_, None) => 15,
        };
        Ok(Some(Params {
            server_no_context_takeover: p.server_no_context_takeover,
            client_no_context_takeover: p.client_no_context_takeover
                || self.client_no_context_takeover,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> DeflateConfig {
        DeflateConfig::default().enabled(true)
    }

    fn p(snct: bool, cnct: bool, server_bits: u8, client_bits: u8) -> Params {
        Params {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
        }
    }

    fn accept(config: &DeflateConfig, header: &str) -> Result<Option<Accepted>, NegotiationError> {
        accept_offer(config, [header.as_bytes()])
    }

    #[test]
    fn server_accepts_or_declines() {
        let d = cfg();
        let off = DeflateConfig::default();
        let c10 = cfg().client_max_window_bits(10);
        let s12 = cfg().server_max_window_bits(12);
        let nct = cfg()
            .server_no_context_takeover(true)
            .client_no_context_takeover(true);
        // (config, offers, Some((response, params)) or None for "declined")
        type Case<'a> = (&'a DeflateConfig, &'a str, Option<(&'a str, Params)>);
        let cases: Vec<Case> = vec![
            (
                &d,
                "permessage-deflate",
                Some(("permessage-deflate", Params::default())),
            ),
            (
                &d,
                "permessage-deflate; client_max_window_bits",
                Some(("permessage-deflate", Params::default())),
            ),
            (
                &c10,
                "permessage-deflate; client_max_window_bits",
                Some((
                    "permessage-deflate; client_max_window_bits=10",
                    p(false, false, 15, 10),
                )),
            ),
            (
                &c10,
                "permessage-deflate; client_max_window_bits=9",
                Some((
                    "permessage-deflate; client_max_window_bits=9",
                    p(false, false, 15, 9),
                )),
            ),
            (
                &d,
                "permessage-deflate; client_max_window_bits=12",
                Some((
                    "permessage-deflate; client_max_window_bits=12",
                    p(false, false, 15, 12),
                )),
            ),
            // The server cannot limit a client that did not offer the parameter.
            (&c10, "permessage-deflate", None),
            (
                &c10,
                "permessage-deflate, permessage-deflate; client_max_window_bits=11",
                Some((
                    "permessage-deflate; client_max_window_bits=10",
                    p(false, false, 15, 10),
                )),
            ),
            (
                &d,
                "permessage-deflate; server_max_window_bits=10",
                Some((
                    "permessage-deflate; server_max_window_bits=10",
                    p(false, false, 10, 15),
                )),
            ),
            (
                &d,
                "permessage-deflate; server_max_window_bits=15",
                Some((
                    "permessage-deflate; server_max_window_bits=15",
                    Params::default(),
                )),
            ),
            (
                &d,
                "permessage-deflate; server_max_window_bits=8",
                Some((
                    "permessage-deflate; server_max_window_bits=8",
                    p(false, false, 8, 15),
                )),
            ),
            (
                &d,
                "permessage-deflate; server_max_window_bits=\"9\"",
                Some((
                    "permessage-deflate; server_max_window_bits=9",
                    p(false, false, 9, 15),
                )),
            ),
            (
                &s12,
                "permessage-deflate",
                Some((
                    "permessage-deflate; server_max_window_bits=12",
                    p(false, false, 12, 15),
                )),
            ),
            (
                &s12,
                "permessage-deflate; server_max_window_bits=13",
                Some((
                    "permessage-deflate; server_max_window_bits=12",
                    p(false, false, 12, 15),
                )),
            ),
            (
                &s12,
                "permessage-deflate; server_max_window_bits=11",
                Some((
                    "permessage-deflate; server_max_window_bits=11",
                    p(false, false, 11, 15),
                )),
            ),
            (
                &d,
                "permessage-deflate; server_no_context_takeover",
                Some((
                    "permessage-deflate; server_no_context_takeover",
                    p(true, false, 15, 15),
                )),
            ),
            (
                &d,
                "permessage-deflate; client_no_context_takeover",
                Some((
                    "permessage-deflate; client_no_context_takeover",
                    p(false, true, 15, 15),
                )),
            ),
            (
                &nct,
                "permessage-deflate",
                Some((
                    "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
                    p(true, true, 15, 15),
                )),
            ),
            (
                &d,
                "permessage-deflate; client_no_context_takeover; server_no_context_takeover; client_max_window_bits=10; server_max_window_bits=10",
                Some((
                    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=10",
                    p(true, true, 10, 10),
                )),
            ),
            // Other extensions are skipped, bad offers declined, the first good one taken.
            (
                &d,
                "x-webkit-deflate-frame, permessage-deflate",
                Some(("permessage-deflate", Params::default())),
            ),
            (&d, "x-webkit-deflate-frame", None),
            (&d, "", None),
            (&d, "permessage-deflate; foo", None),
            (
                &d,
                "permessage-deflate; foo=1, permessage-deflate; server_max_window_bits=9",
                Some((
                    "permessage-deflate; server_max_window_bits=9",
                    p(false, false, 9, 15),
                )),
            ),
            (
                &d,
                "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                None,
            ),
            (
                &d,
                "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
                None,
            ),
            (&d, "permessage-deflate; server_max_window_bits", None),
            (&d, "permessage-deflate; server_max_window_bits=7", None),
            (&d, "permessage-deflate; server_max_window_bits=16", None),
            (&d, "permessage-deflate; server_max_window_bits=09", None),
            (&d, "permessage-deflate; server_max_window_bits=010", None),
            (&d, "permessage-deflate; server_max_window_bits=-9", None),
            (&d, "permessage-deflate; server_max_window_bits=1a", None),
            (&d, "permessage-deflate; client_max_window_bits=0", None),
            (
                &d,
                "permessage-deflate; client_max_window_bits=\"16\"",
                None,
            ),
            (&d, "permessage-deflate; server_no_context_takeover=1", None),
            (
                &d,
                "permessage-deflate; client_no_context_takeover=\"x\"",
                None,
            ),
            (&d, "Permessage-Deflate", None),
            (&d, "permessage-deflate; Server_No_Context_Takeover", None),
            (&off, "permessage-deflate", None),
        ];
        for (config, offers, want) in cases {
            let got = accept(config, offers).unwrap_or_else(|e| panic!("{offers:?}: {e}"));
            let got = got.map(|a| (a.response, a.params));
            let want = want.map(|(r, p)| (r.to_owned(), p));
            assert_eq!(got, want, "{offers:?} with {config:?}");
        }
    }

    #[test]
    fn server_reports_a_malformed_header() {
        for bad in [
            "permessage-deflate;",
            "permessage-deflate; a=\"b c\"",
            "a b",
        ] {
            let e = accept(&cfg(), bad).unwrap_err();
            assert_eq!(
                (e.clone(), e.status()),
                (NegotiationError::Syntax, 400),
                "{bad:?}"
            );
        }
        // A disabled server does not look at the header at all.
        assert_eq!(accept(&DeflateConfig::default(), "a b"), Ok(None));
        // Several header fields are one list.
        let got = accept_offer(
            &cfg(),
            [
                &b"x-foo"[..],
                b"permessage-deflate; server_max_window_bits=10",
            ],
        );
        assert_eq!(got.unwrap().unwrap().params, p(false, false, 10, 15));
    }

    #[test]
    fn client_offers() {
        let cases: Vec<(DeflateConfig, &str)> = vec![
            (cfg(), "permessage-deflate; client_max_window_bits"),
            (
                cfg().client_max_window_bits(10),
                "permessage-deflate; client_max_window_bits=10",
            ),
            (
                cfg().server_max_window_bits(8),
                "permessage-deflate; server_max_window_bits=8; client_max_window_bits",
            ),
            (
                cfg()
                    .server_no_context_takeover(true)
                    .client_no_context_takeover(true),
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits",
            ),
            (
                cfg().client_max_window_bits(3),
                "permessage-deflate; client_max_window_bits=8",
            ),
        ];
        for (config, want) in cases {
            assert_eq!(config.offer().unwrap().header_value(), want);
        }
        assert_eq!(DeflateConfig::default().offer(), None);
    }

    #[test]
    fn client_checks_the_answer() {
        use NegotiationError::*;
        let plain = cfg().offer().unwrap();
        let strict = cfg()
            .server_no_context_takeover(true)
            .server_max_window_bits(10)
            .client_max_window_bits(12)
            .offer()
            .unwrap();
        let no_client_bits = Offer {
            client_max_window_bits: ClientWindow::NotOffered,
            ..plain
        };
        let promise = cfg().client_no_context_takeover(true).offer().unwrap();
        type Case<'a> = (&'a Offer, &'a str, Result<Option<Params>, NegotiationError>);
        let cases: Vec<Case> = vec![
            (&plain, "", Ok(None)),
            (&plain, "permessage-deflate", Ok(Some(Params::default()))),
            (&plain, " permessage-deflate ,", Ok(Some(Params::default()))),
            (
                &plain,
                "permessage-deflate; server_no_context_takeover",
                Ok(Some(p(true, false, 15, 15))),
            ),
            (
                &plain,
                "permessage-deflate; client_no_context_takeover",
                Ok(Some(p(false, true, 15, 15))),
            ),
            (
                &plain,
                "permessage-deflate; client_max_window_bits=9",
                Ok(Some(p(false, false, 15, 9))),
            ),
            (
                &plain,
                "permessage-deflate; client_max_window_bits=8",
                Ok(Some(p(false, false, 15, 8))),
            ),
            (
                &plain,
                "permessage-deflate; server_max_window_bits=10",
                Ok(Some(p(false, false, 10, 15))),
            ),
            (
                &plain,
                "permessage-deflate; client_max_window_bits",
                Err(InvalidValue("client_max_window_bits")),
            ),
            (
                &plain,
                "permessage-deflate; client_max_window_bits=16",
                Err(InvalidValue("client_max_window_bits")),
            ),
            (
                &plain,
                "permessage-deflate; server_max_window_bits",
                Err(InvalidValue("server_max_window_bits")),
            ),
            (
                &plain,
                "permessage-deflate; server_max_window_bits=7",
                Err(InvalidValue("server_max_window_bits")),
            ),
            (
                &plain,
                "permessage-deflate; client_no_context_takeover=1",
                Err(InvalidValue("client_no_context_takeover")),
            ),
            (
                &plain,
                "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                Err(DuplicateParameter("server_no_context_takeover")),
            ),
            (
                &plain,
                "permessage-deflate; foo",
                Err(UnknownParameter("foo".into())),
            ),
            (&plain, "x-foo", Err(UnexpectedExtension("x-foo".into()))),
            (
                &plain,
                "permessage-deflate, permessage-deflate",
                Err(UnexpectedExtension("permessage-deflate".into())),
            ),
            (
                &plain,
                "permessage-deflate, x-foo",
                Err(UnexpectedExtension("x-foo".into())),
            ),
            (&plain, "permessage-deflate;", Err(Syntax)),
            (
                &strict,
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=10",
                Ok(Some(p(true, false, 10, 12))),
            ),
            (
                &strict,
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=9; client_max_window_bits=11",
                Ok(Some(p(true, false, 9, 11))),
            ),
            (
                &strict,
                "permessage-deflate; server_max_window_bits=10",
                Err(MissingParameter("server_no_context_takeover")),
            ),
            (
                &strict,
                "permessage-deflate; server_no_context_takeover",
                Err(MissingParameter("server_max_window_bits")),
            ),
            (
                &strict,
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=11",
                Err(WindowTooLarge("server_max_window_bits")),
            ),
            (
                &strict,
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits=13",
                Err(WindowTooLarge("client_max_window_bits")),
            ),
            (
                &no_client_bits,
                "permessage-deflate; client_max_window_bits=10",
                Err(NotOffered("client_max_window_bits")),
            ),
            (
                &no_client_bits,
                "permessage-deflate",
                Ok(Some(Params::default())),
            ),
            // The client keeps its promise whatever the answer says.
            (
                &promise,
                "permessage-deflate",
                Ok(Some(p(false, true, 15, 15))),
            ),
        ];
        for (offer, answer, want) in cases {
            assert_eq!(
                offer.verify([answer.as_bytes()]),
                want,
                "{answer:?} to {}",
                offer.header_value()
            );
        }
    }

    #[test]
    fn both_sides_agree() {
        let configs = [
            cfg(),
            cfg().server_no_context_takeover(true),
            cfg().client_no_context_takeover(true),
            cfg().server_max_window_bits(9),
            cfg().client_max_window_bits(8),
            cfg().server_max_window_bits(12).client_max_window_bits(11),
            cfg()
                .server_no_context_takeover(true)
                .client_no_context_takeover(true)
                .server_max_window_bits(8)
                .client_max_window_bits(10),
        ];
        for client in &configs {
            for server in &configs {
                let offer = client.offer().unwrap();
                let header = offer.header_value();
                let accepted = accept(server, &header).unwrap().unwrap();
                let params = offer
                    .verify([accepted.response.as_bytes()])
                    .unwrap()
                    .unwrap();
                assert_eq!(
                    params, accepted.params,
                    "{header:?} answered {:?}",
                    accepted.response
                );
            }
        }
    }
}

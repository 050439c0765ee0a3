//! The `Sec-WebSocket-Extensions` header (RFC 6455 section 9.1), parsed
//! without regard to which extensions it names.
//!
//! ```text
//! extension-list  = 1#extension
//! extension       = extension-token *( ";" extension-param )
//! extension-param = token [ "=" (token | quoted-string) ]
//! ```
//!
//! A quoted value must still be a token once unescaped (section 9.1). Lists
//! follow RFC 7230 section 7: empty elements are skipped, and optional
//! whitespace may surround `,`, `;` and `=`. Parsing is one pass over the
//! bytes, so a hostile header costs time linear in its length.

use std::borrow::Cow;

use super::NegotiationError;

/// One element of an extension list: a name and its parameters, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension<'a> {
    /// The extension's name, such as `permessage-deflate`.
    pub name: &'a str,
    /// Its parameters as sent, duplicates included.
    pub params: Vec<Param<'a>>,
}

/// One `name[=value]` parameter of an [`Extension`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param<'a> {
    /// The parameter's name.
    pub name: &'a str,
    /// Its value, unquoted and unescaped; `None` when it had no `=`.
    pub value: Option<Cow<'a, str>>,
}

/// Parses every value of the `Sec-WebSocket-Extensions` fields of a head,
/// in order, into one list.
///
/// ```
/// use wsio::ws::deflate::parse_extensions;
/// let exts = parse_extensions([
///     &b"permessage-deflate; client_max_window_bits, x-foo"[..],
///     &b"permessage-deflate;server_max_window_bits=\"10\""[..],
/// ])
/// .unwrap();
/// assert_eq!(exts.len(), 3);
/// assert_eq!(exts[0].params[0].name, "client_max_window_bits");
/// assert_eq!(exts[2].params[0].value.as_deref(), Some("10"));
/// assert!(parse_extensions([&b"permessage-deflate; a=\"b c\""[..]]).is_err());
/// ```
pub fn parse_extensions<'a, I>(values: I) -> Result<Vec<Extension<'a>>, NegotiationError>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut out = Vec::new();
    for value in values {
        parse_value(value, &mut out)?;
    }
    Ok(out)
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn token(&mut self) -> Result<&'a str, NegotiationError> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        let tok = self.buf.get(start..self.pos).unwrap_or_default();
        match std::str::from_utf8(tok) {
            Ok(s) if !s.is_empty() => Ok(s),
            _ => Err(NegotiationError::Syntax),
        }
    }

    /// A quoted-string (RFC 7230 section 3.2.6) whose content, unescaped,
    /// must be a token; the cursor is on the opening quote.
    fn quoted(&mut self) -> Result<Cow<'a, str>, NegotiationError> {
        self.pos += 1;
        let start = self.pos;
        let mut owned: Option<String> = None;
        loop {
            let c = self.peek().ok_or(NegotiationError::Syntax)?;
            match c {
                b'"' => break,
                b'\\' => {
                    let inner = self.buf.get(start..self.pos).unwrap_or_default();
                    let s =
                        owned.get_or_insert_with(|| String::from_utf8_lossy(inner).into_owned());
                    self.pos += 1;
                    let escaped = self.peek().ok_or(NegotiationError::Syntax)?;
                    if !is_tchar(escaped) {
                        return Err(NegotiationError::Syntax);
                    }
                    s.push(char::from(escaped));
                }
                c if is_tchar(c) => {
                    if let Some(s) = owned.as_mut() {
                        s.push(char::from(c));
                    }
                }
                // Any other qdtext is legal in a quoted-string but not in
                // a token, which the unescaped value must be.
                _ => return Err(NegotiationError::Syntax),
            }
            self.pos += 1;
        }
        let inner = self.buf.get(start..self.pos).unwrap_or_default();
        self.pos += 1;
        let value = match owned {
            Some(s) => Cow::Owned(s),
            None => {
                Cow::Borrowed(std::str::from_utf8(inner).map_err(|_| NegotiationError::Syntax)?)
            }
        };
        if is_token(&value) {
            Ok(value)
        } else {
            Err(NegotiationError::Syntax)
        }
    }
}

fn parse_value<'a>(buf: &'a [u8], out: &mut Vec<Extension<'a>>) -> Result<(), NegotiationError> {
    let mut cur = Cursor { buf, pos: 0 };
    loop {
        cur.skip_ows();
        match cur.peek() {
            None => return Ok(()),
            Some(b',') => {
                cur.pos += 1;
                continue;
            }
            Some(_) => {}
        }
        let name = cur.token()?;
        let mut params = Vec::new();
        cur.skip_ows();
        while cur.eat(b';') {
            cur.skip_ows();
            let pname = cur.token()?;
            cur.skip_ows();
            let value = if cur.eat(b'=') {
                cur.skip_ows();
                let v = if cur.peek() == Some(b'"') {
                    cur.quoted()?
                } else {
                    Cow::Borrowed(cur.token()?)
                };
                cur.skip_ows();
                Some(v)
            } else {
                None
            };
            params.push(Param { name: pname, value });
        }
        out.push(Extension { name, params });
        match cur.peek() {
            None => return Ok(()),
            Some(b',') => cur.pos += 1,
            Some(_) => return Err(NegotiationError::Syntax),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Parsed = Vec<(String, Vec<(String, Option<String>)>)>;

    fn parse(s: &str) -> Result<Parsed, NegotiationError> {
        parse_extensions([s.as_bytes()]).map(|exts| {
            exts.into_iter()
                .map(|e| {
                    let params = e
                        .params
                        .into_iter()
                        .map(|p| (p.name.to_owned(), p.value.map(Cow::into_owned)))
                        .collect();
                    (e.name.to_owned(), params)
                })
                .collect()
        })
    }

    #[test]
    fn valid_lists() {
        type Want = &'static [(
            &'static str,
            &'static [(&'static str, Option<&'static str>)],
        )];
        let cases: &[(&str, Want)] = &[
            ("", &[]),
            (" , ,\t", &[]),
            ("permessage-deflate", &[("permessage-deflate", &[])]),
            (
                "permessage-deflate; client_max_window_bits",
                &[("permessage-deflate", &[("client_max_window_bits", None)])],
            ),
            (
                "permessage-deflate;client_max_window_bits=10;server_no_context_takeover",
                &[(
                    "permessage-deflate",
                    &[
                        ("client_max_window_bits", Some("10")),
                        ("server_no_context_takeover", None),
                    ],
                )],
            ),
            (
                "a ; b = \"1\\5\" , ,c;d=e ,",
                &[("a", &[("b", Some("15"))]), ("c", &[("d", Some("e"))])],
            ),
            ("a; b=\"x\"", &[("a", &[("b", Some("x"))])]),
            ("a;b;b", &[("a", &[("b", None), ("b", None)])]),
        ];
        for (input, want) in cases {
            let got = parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            let want: Vec<_> = want
                .iter()
                .map(|(n, ps)| {
                    let ps: Vec<_> = ps
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
                        .collect();
                    ((*n).to_owned(), ps)
                })
                .collect();
            assert_eq!(got, want, "{input:?}");
        }
    }

    #[test]
    fn syntax_errors() {
        for input in [
            ";a",
            "a;",
            "a; ;b",
            "a;b=",
            "a;b=\"\"",
            "a;b=\"x y\"",
            "a;b=\"x,y\"",
            "a;b=\"x",
            "a;b=\"x\\",
            "a;b=\"x\\ \"",
            "a b",
            "a;b c",
            "a;b=c d",
            "a=b",
            "a;b=(c)",
            "\"a\"",
            "a;b=\"c\"d",
            "pérmessage",
        ] {
            assert_eq!(parse(input), Err(NegotiationError::Syntax), "{input:?}");
        }
    }

    #[test]
    fn several_fields_make_one_list() {
        let exts = parse_extensions([&b"a"[..], b"", b"b;c=1, d"]).unwrap();
        let names: Vec<_> = exts.iter().map(|e| e.name).collect();
        assert_eq!(names, ["a", "b", "d"]);
    }

    #[test]
    fn long_hostile_input_is_linear() {
        let mut s = String::from("a");
        s.push_str(&";b".repeat(50_000));
        s.push_str(&" ".repeat(100_000));
        s.push('x');
        assert_eq!(parse(&s), Err(NegotiationError::Syntax));
        let quoted = format!("a;b=\"{}", "\\c".repeat(100_000));
        assert_eq!(parse(&quoted), Err(NegotiationError::Syntax));
    }
}

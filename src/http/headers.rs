use std::fmt;

/// An ordered list of header fields stored in one buffer.
///
/// A parsed head costs two allocations however many headers it has; lookups
/// are case-insensitive, as HTTP field names are.
///
/// ```
/// use wsio::http::Headers;
/// let mut h = Headers::new();
/// h.push("Connection", "keep-alive, Upgrade");
/// assert!(h.has_token("connection", "upgrade"));
/// assert_eq!(h.get_str("CONNECTION"), Some("keep-alive, Upgrade"));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    buf: Vec<u8>,
    // (name start, name end, value end); the value starts at the name end.
    idx: Vec<(u32, u32, u32)>,
}

impl Headers {
    /// An empty list.
    pub fn new() -> Self {
        Headers::default()
    }

    pub(crate) fn with_capacity(bytes: usize, count: usize) -> Self {
        Headers {
            buf: Vec::with_capacity(bytes),
            idx: Vec::with_capacity(count),
        }
    }

    /// Appends a field. Names and values are stored as given.
    pub fn push(&mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        let (name, value) = (name.as_ref(), value.as_ref());
        let start = self.buf.len();
        self.buf.extend_from_slice(name);
        let mid = self.buf.len();
        self.buf.extend_from_slice(value);
        let end = self.buf.len();
        // Heads are limited to far below 4 GiB by every parser limit; a caller
        // building a larger one by hand gets its extra fields dropped.
        if let (Ok(s), Ok(m), Ok(e)) =
            (u32::try_from(start), u32::try_from(mid), u32::try_from(end))
        {
            self.idx.push((s, m, e));
        } else {
            self.buf.truncate(start);
        }
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.idx.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.idx.is_empty()
    }

    /// All fields in order, as `(name, value)` byte slices.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.idx.iter().map(|&(s, m, e)| {
            (
                &self.buf[s as usize..m as usize],
                &self.buf[m as usize..e as usize],
            )
        })
    }

    /// Every value of the fields named `name` (case-insensitive).
    pub fn get_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a [u8]> + 'a {
        let name = name.as_bytes().to_ascii_lowercase();
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(&name))
            .map(|(_, v)| v)
    }

    /// The first value of the field `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.get_all(name).next()
    }

    /// The first value of the field `name`, if it is UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Whether any field `name` lists `token` in its comma-separated value
    /// (both compared case-insensitively, as for `Connection: Upgrade`).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.tokens(name)
            .any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
    }

    /// The comma-separated, trimmed, non-empty items of every field `name`.
    pub fn tokens<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.get_all(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .map(|t| t.trim_ascii())
            .filter(|t| !t.is_empty())
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.iter()
                    .map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v))),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_split_and_trim() {
        let mut h = Headers::new();
        h.push("Sec-WebSocket-Protocol", "  chat ,, superchat");
        h.push("sec-websocket-protocol", "x");
        let t: Vec<_> = h.tokens("sec-websocket-protocol").collect();
        assert_eq!(t, vec![&b"chat"[..], b"superchat", b"x"]);
        assert!(!h.has_token("sec-websocket-protocol", "ch"));
    }
}

//! The room for the driver's next read, and what is known of its memory.
//!
//! # Theory of operation
//!
//! Input is read straight into the connection's buffer: the room is the
//! spare capacity of the input allocation, just after the bytes not yet
//! consumed, so that what is read joins them without a copy (see
//! `Connection::input_buffer`). Drivers that write into uninitialised memory
//! (`BufMut`, tokio's `read_buf`) need nothing more. [`std::io::Read`] wants
//! an initialised `&mut [u8]`, and zero-filling the room before every read
//! costs about as much as the read itself. So the room remembers a span of
//! its allocation known to be initialised, and [`Room::read`] zero-fills
//! only what lies outside it: each byte of an allocation is written with
//! zeros at most once, however often the allocation is reclaimed for new
//! reads once the application has dropped the messages cut from it.
//!
//! The span is kept only while it is certain to describe the allocation the
//! room is a view of: every way the room can get another allocation (a new
//! one made here, the input's own, a caller's swap through
//! [`Room::lend`]) forgets it, and the room's handle keeps the allocation
//! alive, so its addresses cannot be reused while the span names them.
//! While the connection holds that handle, no one else can write into the
//! allocation either: a message cut from it is a `Bytes`, which gives
//! mutable access only to its sole holder. That is the whole argument for
//! the two `unsafe` blocks in [`Room::read`].

use std::{
    io::{self, Read},
    mem::MaybeUninit,
    ops::Deref,
};

use bytes::BytesMut;

/// Addresses `start..end` of an allocation, known to be initialised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Known {
    start: usize,
    end: usize,
}

impl Known {
    /// The bytes of `b` (initialised, as every `BytesMut`'s are).
    fn of(b: &BytesMut) -> Self {
        let start = b.as_ptr() as usize;
        Known {
            start,
            end: start.saturating_add(b.len()),
        }
    }

    fn holds(&self, p: *const u8) -> bool {
        (self.start..self.end).contains(&(p as usize))
    }
}

/// The room for the next read: an empty `BytesMut` whose spare capacity
/// is offered (bytes appended by a caller of `input_buffer` and not yet
/// committed sit at its front), and the span of its allocation known to be
/// initialised. Derefs to the buffer for reading; every change goes
/// through the methods below, which keep the span true.
#[derive(Debug, Default)]
pub(super) struct Room {
    buf: BytesMut,
    known: Known,
}

impl Deref for Room {
    type Target = BytesMut;
    fn deref(&self) -> &BytesMut {
        &self.buf
    }
}

impl Room {
    /// Gives the allocation back.
    pub(super) fn release(&mut self) {
        *self = Room::default();
    }

    /// The buffer, for a caller that may do anything with it (swap it,
    /// write uninitialised bytes into its spare capacity): what was known
    /// of it is forgotten.
    pub(super) fn lend(&mut self) -> &mut BytesMut {
        self.known = Known::default();
        &mut self.buf
    }

    /// Cuts off what was read into the room; the rest stays room.
    pub(super) fn split(&mut self) -> BytesMut {
        self.buf.split()
    }

    /// Drops what was read into the room, keeping the room.
    pub(super) fn discard(&mut self) {
        self.buf.clear();
    }

    /// Makes at least `read` bytes of room after `input` (the bytes not yet
    /// consumed), contiguous with them in one allocation, so that what is
    /// read joins them without a copy. The room's allocation is reused if
    /// it is the input's and has room (reclaiming the memory of messages
    /// cut from it that the application has dropped); otherwise a new one
    /// is made, of `input`'s length plus `grow`, and `input` is copied into
    /// it. Returns the size of a new allocation, if one was made.
    pub(super) fn make(&mut self, input: &mut BytesMut, read: usize, grow: usize) -> Option<usize> {
        if !self.buf.is_empty() {
            // Appended but not yet committed: keep appending after it.
            self.lend().reserve(read);
            return None;
        }
        let spare = std::mem::take(&mut self.buf);
        let mut known = std::mem::take(&mut self.known);
        // The input is in the room's allocation if it starts in memory known
        // to be part of it (checked while both are held: live allocations
        // do not overlap).
        if !input.is_empty() && !known.holds(input.as_ptr()) {
            known = Known::default();
        }
        // Rejoin the spare room with the input (no copy when it is the tail
        // of the same allocation).
        if input.is_empty() {
            *input = spare;
        } else {
            let at = input.as_ptr();
            input.unsplit(spare);
            if input.as_ptr() != at {
                known = Known::default();
            }
        }
        let mut fresh = None;
        // `try_reclaim` never allocates: the input stays in its allocation.
        if input.capacity() - input.len() < read && !input.try_reclaim(grow) {
            // A new allocation, for what is buffered and the reads to come:
            // no more is copied than the frame in progress.
            let mut new = BytesMut::with_capacity(input.len().saturating_add(grow));
            new.extend_from_slice(input);
            known = Known::of(&new);
            *input = new;
            fresh = Some(input.capacity());
        }
        // The same allocation as `input`, whatever happened above.
        self.buf = input.split_off(input.len());
        self.known = known;
        fresh
    }

    /// Reads from `reader` into at most `max` bytes of the room, after any
    /// bytes already in it, zero-filling first only what is not known to
    /// be initialised. Returns what `reader` returned.
    pub(super) fn read(&mut self, reader: &mut impl Read, max: usize) -> io::Result<usize> {
        let len = self.buf.len();
        let spare = self.buf.spare_capacity_mut();
        let n = max.min(spare.len());
        let Some(room) = spare.get_mut(..n) else {
            return Ok(0);
        };
        let (s, e) = (room.as_ptr() as usize, room.as_ptr() as usize + n);
        let Known { start, end } = self.known;
        if start <= s && s <= end {
            // Known up to `end`: only what lies beyond is zero-filled, and
            // the span grows to cover the room.
            let done = end.min(e) - s;
            if let Some(rest) = room.get_mut(done..) {
                rest.fill(MaybeUninit::new(0));
            }
            self.known.end = end.max(e);
        } else {
            room.fill(MaybeUninit::new(0));
            self.known = Known { start: s, end: e };
        }
        #[allow(unsafe_code)]
        // SAFETY: every byte of `room` is initialised: those outside
        // `known` were just written, and those inside it are initialised by
        // the invariant of `known` (see the module docs: it names memory of
        // the allocation `self.buf` is a view of, which `self.buf` keeps
        // alive and only the connection can write). `u8` and
        // `MaybeUninit<u8>` have the same layout.
        let into = unsafe { std::slice::from_raw_parts_mut(room.as_mut_ptr().cast::<u8>(), n) };
        let got = reader.read(into)?;
        if got > n {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the reader claims more bytes than it was given room for",
            ));
        }
        #[allow(unsafe_code)]
        // SAFETY: `len + got` is within the capacity (`got <= n <=` the
        // spare capacity), and the bytes from `len` to `len + got` were
        // initialised above.
        unsafe {
            self.buf.set_len(len + got);
        }
        Ok(got)
    }
}

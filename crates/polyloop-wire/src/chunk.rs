//! Chunks: consecutive inputs of one task that travel to a worker, run and come back together.
//!
//! A map of many small tasks would pay per task for its id, its table entry and its bookkeeping
//! on both sides; a chunk pays that once for many inputs. The parent sends a
//! [`ChunkFrame`](crate::ChunkFrame): `count` inputs, each a length and its postcard bytes, back
//! to back. The worker runs them in order and answers with one or more results for the chunk's
//! id whose outcome is [`Outcome::Part`](crate::Outcome::Part): the next outcomes of the chunk,
//! in input order, each an encoded [`Outcome`], back to back. The chunk is answered when the
//! parts have covered all `count` inputs. Any other outcome for a chunk's id (the worker
//! cancelled it, or has no such task) answers all the inputs not yet covered.

use crate::{Outcome, WireError, varint};

/// Appends one input to a chunk's inputs: its length, then its bytes.
pub fn push_input(inputs: &mut Vec<u8>, input: &[u8]) {
    varint::push_u64(inputs, input.len() as u64);
    inputs.extend_from_slice(input);
}

/// Appends one input to a chunk's inputs as [`push_input`] does, encoding `value` in place
/// rather than copying an encoding made elsewhere. On an error nothing is appended.
///
/// ```
/// let (mut ours, mut theirs) = (Vec::new(), Vec::new());
/// polyloop_wire::push_encoded_input(&mut ours, &(7u64, "x")).unwrap();
/// polyloop_wire::push_input(&mut theirs, &postcard::to_allocvec(&(7u64, "x")).unwrap());
/// assert_eq!(ours, theirs);
/// ```
pub fn push_encoded_input<T: serde::Serialize + ?Sized>(
    inputs: &mut Vec<u8>,
    value: &T,
) -> postcard::Result<()> {
    let start = inputs.len();
    // Room for the length of most inputs: one byte.
    inputs.push(0);
    if let Err(err) = crate::encode_value(value, inputs) {
        inputs.truncate(start);
        return Err(err);
    }
    let len = inputs.len() - start - 1;
    if let Ok(short @ 0..0x80) = u8::try_from(len) {
        inputs[start] = short;
    } else {
        // A longer input's length takes more bytes: the input moves up to make room.
        let mut prefix = Vec::with_capacity(10);
        varint::push_u64(&mut prefix, len as u64);
        inputs.splice(start..=start, prefix);
    }
    Ok(())
}

/// The inputs of a chunk, one at a time. Yields an error, and then nothing, if the bytes do not
/// hold exactly the announced count of inputs.
#[derive(Debug, Clone)]
pub struct ChunkInputs<'a> {
    rest: &'a [u8],
    left: u32,
    failed: bool,
}

impl<'a> ChunkInputs<'a> {
    /// The `count` inputs in `inputs`, as [`push_input`] wrote them.
    pub fn new(inputs: &'a [u8], count: u32) -> Self {
        ChunkInputs { rest: inputs, left: count, failed: false }
    }

    /// The inputs not yet read, as bytes: `ChunkInputs::new(rest, left)` reads them.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    /// How many inputs are not yet read.
    pub fn left(&self) -> u32 {
        self.left
    }
}

impl<'a> Iterator for ChunkInputs<'a> {
    type Item = Result<&'a [u8], WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.left == 0 {
            if self.rest.is_empty() {
                return None;
            }
            self.failed = true;
            return Some(Err(WireError::TrailingBytes(self.rest.len())));
        }
        self.left -= 1;
        if let Some((input, rest)) = varint::take_bytes(self.rest) {
            self.rest = rest;
            return Some(Ok(input));
        }
        let input = postcard::take_from_bytes::<&serde_bytes::Bytes>(self.rest)
            .map_err(WireError::from)
            .map(|(input, rest)| {
                self.rest = rest;
                &**input
            });
        self.failed = input.is_err();
        Some(input)
    }
}

/// Appends one outcome to a part's outcomes. A nested part is refused: it would not say whose
/// outcomes it holds.
pub fn push_outcome(outcomes: &mut Vec<u8>, outcome: &Outcome<'_>) {
    debug_assert!(!matches!(outcome, Outcome::Part(_)), "a part inside a part");
    // Serializing into a Vec cannot fail for these field types.
    let _ = postcard::to_io(outcome, &mut *outcomes);
}

/// Appends a successful outcome whose `len` bytes of output `write` appends itself. If `write`
/// fails or appends other than `len` bytes, the outcome is taken back out and the reason
/// returned.
pub fn push_ok_outcome_with(
    outcomes: &mut Vec<u8>,
    len: usize,
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), String>,
) -> Result<(), String> {
    let start = outcomes.len();
    // The `Ok` tag (0), then the bytes: postcard's encoding of `Outcome::Ok` by hand.
    outcomes.push(0);
    varint::push_u64(outcomes, len as u64);
    outcomes.reserve(len);
    let before = outcomes.len();
    let written = write(outcomes).and_then(|()| match outcomes.len() - before {
        n if n == len => Ok(()),
        n => Err(format!("the output wrote {n} bytes after announcing {len}")),
    });
    if written.is_err() {
        outcomes.truncate(start);
    }
    written
}

/// The outcomes of one part, one at a time. Yields an error, and then nothing, on bytes that
/// are not a sequence of outcomes, or on a part inside the part.
#[derive(Debug, Clone)]
pub struct PartOutcomes<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> PartOutcomes<'a> {
    /// The outcomes in `part`, as [`push_outcome`] wrote them.
    pub fn new(part: &'a [u8]) -> Self {
        PartOutcomes { rest: part, failed: false }
    }

    /// The outcomes not yet read, as bytes: `PartOutcomes::new(rest)` reads them.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    /// Counts the outcomes and finds the first that is not `Ok`, checking every one: what a
    /// receiver wants to know of a part before it hands it on.
    pub fn scan(part: &'a [u8]) -> Result<PartSummary, WireError> {
        let mut summary = PartSummary { count: 0, errors: 0, first_error: None };
        let mut rest = part;
        while !rest.is_empty() {
            // As `next` reads an `Ok`, without making the outcome only to drop it.
            if let [0, after_tag @ ..] = rest
                && let Some((_, after)) = varint::take_bytes(after_tag)
            {
                rest = after;
            } else {
                let mut outcomes = PartOutcomes::new(rest);
                match outcomes.next() {
                    Some(Ok(Outcome::Ok(_))) => {}
                    Some(Ok(_)) => {
                        summary.first_error.get_or_insert(summary.count);
                        summary.errors += 1;
                    }
                    Some(Err(err)) => return Err(err),
                    None => unreachable!("outcomes are read from bytes that are not empty"),
                }
                rest = outcomes.rest();
            }
            summary.count += 1;
        }
        Ok(summary)
    }
}

/// What [`PartOutcomes::scan`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSummary {
    /// Outcomes in the part.
    pub count: u32,
    /// How many of them are not `Ok`.
    pub errors: u32,
    /// The position of the first outcome that is not `Ok`, if any.
    pub first_error: Option<u32>,
}

impl<'a> Iterator for PartOutcomes<'a> {
    type Item = Result<Outcome<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        // Most outcomes are `Ok` (tag 0) and a byte string: read those directly.
        if let [0, after_tag @ ..] = self.rest
            && let Some((output, rest)) = varint::take_bytes(after_tag)
        {
            self.rest = rest;
            return Some(Ok(Outcome::Ok(output)));
        }
        let outcome = match postcard::take_from_bytes::<Outcome<'a>>(self.rest) {
            Ok((Outcome::Part(_), _)) => Err(WireError::Unexpected("a part inside a part")),
            Ok((outcome, rest)) => {
                self.rest = rest;
                Ok(outcome)
            }
            Err(err) => Err(err.into()),
        };
        self.failed = outcome.is_err();
        Some(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RemoteError;

    #[test]
    fn inputs_encoded_in_place_read_as_pushed_ones() {
        let values = [String::new(), "a".repeat(127), "b".repeat(128), "c".repeat(20_000)];
        let (mut ours, mut theirs) = (vec![9], vec![9]);
        for value in &values {
            push_encoded_input(&mut ours, value).unwrap();
            push_input(&mut theirs, &postcard::to_allocvec(value).unwrap());
        }
        assert_eq!(ours, theirs);
        let read: Vec<String> = ChunkInputs::new(&ours[1..], 4)
            .map(|input| postcard::from_bytes(input.unwrap()).unwrap())
            .collect();
        assert_eq!(read, values);
        // A value that fails to serialize leaves nothing behind.
        struct Refuses;
        impl serde::Serialize for Refuses {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("no"))
            }
        }
        assert!(push_encoded_input(&mut ours, &(1u8, Refuses)).is_err());
        assert_eq!(ours, theirs);
    }

    #[test]
    fn inputs_round_trip_and_their_count_is_checked() {
        let mut inputs = Vec::new();
        for input in [&b"a"[..], b"", &[7; 300]] {
            push_input(&mut inputs, input);
        }
        let all: Vec<&[u8]> = ChunkInputs::new(&inputs, 3).map(Result::unwrap).collect();
        assert_eq!(all, [&b"a"[..], b"", &[7; 300]]);
        let fewer: Vec<_> = ChunkInputs::new(&inputs, 2).collect();
        assert!(matches!(fewer[2], Err(WireError::TrailingBytes(_))), "{fewer:?}");
        assert_eq!(fewer.len(), 3);
        let more: Vec<_> = ChunkInputs::new(&inputs, 4).collect();
        assert!(more[3].is_err() && more.len() == 4, "{more:?}");
        let cut: Vec<_> = ChunkInputs::new(&inputs[..inputs.len() - 1], 3).collect();
        assert!(cut[2].is_err() && cut.len() == 3, "{cut:?}");
    }

    #[test]
    fn outcomes_round_trip_through_a_part() {
        let mut part = Vec::new();
        push_outcome(&mut part, &Outcome::Ok(&[1, 2, 3]));
        push_ok_outcome_with(&mut part, 2, |out| {
            out.extend_from_slice(&[4, 5]);
            Ok(())
        })
        .unwrap();
        let failed =
            Outcome::Failed(RemoteError { message: "no".into(), chain: vec![], value: None });
        push_outcome(&mut part, &failed);
        push_outcome(&mut part, &Outcome::Cancelled);
        let outcomes: Vec<Outcome<'_>> = PartOutcomes::new(&part).map(Result::unwrap).collect();
        assert_eq!(
            outcomes,
            [Outcome::Ok(&[1, 2, 3]), Outcome::Ok(&[4, 5]), failed, Outcome::Cancelled]
        );
        let summary = PartOutcomes::scan(&part).unwrap();
        assert_eq!(summary, PartSummary { count: 4, errors: 2, first_error: Some(2) });
    }

    #[test]
    fn a_failed_write_leaves_the_part_as_it_was() {
        let mut part = Vec::new();
        push_outcome(&mut part, &Outcome::Ok(&[9]));
        let before = part.clone();
        let short = push_ok_outcome_with(&mut part, 4, |out| {
            out.push(1);
            Ok(())
        });
        assert!(short.is_err());
        let failing = push_ok_outcome_with(&mut part, 4, |_| Err("no".into()));
        assert_eq!(failing, Err("no".into()));
        assert_eq!(part, before);
    }

    #[test]
    fn garbage_and_nested_parts_are_refused() {
        assert!(PartOutcomes::scan(&[0xff, 0xff, 0xff]).is_err());
        let mut nested = Vec::new();
        let _ = postcard::to_io(&Outcome::Part(&[]), &mut nested);
        assert_eq!(PartOutcomes::scan(&nested), Err(WireError::Unexpected("a part inside a part")));
        // Bytes announced but missing.
        assert!(PartOutcomes::scan(&[0, 5, 1]).is_err());
        assert_eq!(
            PartOutcomes::scan(&[]).unwrap(),
            PartSummary { count: 0, errors: 0, first_error: None }
        );
    }
}

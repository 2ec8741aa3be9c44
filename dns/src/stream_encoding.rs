//! The record stream's zstd content encoding, undone chunk by chunk with bounded memory.
//!
//! With `Accept-Encoding: zstd` the controller sends every stream line as its own zstd frame, compressed
//! once for all replicas; the body is one standard zstd stream of concatenated frames. A 100k-record
//! snapshot crosses the network several times smaller, which matters when every node runs a replica.

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use zstd::stream::raw::{DParameter, Decoder, InBuffer, Operation, OutBuffer};

/// The largest zstd window accepted (8 MiB): a frame asking for more is refused rather than allowed to
/// claim the memory. The controller compresses with a 2 MiB window (`STREAM_ZSTD_WINDOW_LOG`).
const WINDOW_LOG_MAX: u32 = roster_shared::STREAM_ZSTD_WINDOW_LOG_MAX;

/// Decompressed bytes are produced this many at a time, so that a limit is checked before it is passed.
const STEP: usize = 64 << 10;

pub struct ZstdChunks {
    decoder: Decoder<'static>,
    scratch: Vec<u8>,
}

impl ZstdChunks {
    pub fn new() -> Result<Self, String> {
        let mut decoder = Decoder::new().map_err(|e| format!("zstd decoder: {e}"))?;
        decoder.set_parameter(DParameter::WindowLogMax(WINDOW_LOG_MAX)).map_err(|e| format!("zstd decoder: {e}"))?;
        Ok(Self { decoder, scratch: vec![0; STEP] })
    }

    /// Appends what `input` decompresses to to `out`; an error for a corrupt stream, or as soon as `out`
    /// would hold more than `limit` bytes (a frame cannot grow without bound through compression).
    pub fn feed(&mut self, input: &[u8], out: &mut BytesMut, limit: usize) -> Result<(), String> {
        let mut input = InBuffer::around(input);
        loop {
            let mut output = OutBuffer::around(&mut self.scratch[..]);
            self.decoder.run(&mut input, &mut output).map_err(undecodable)?;
            let written = output.pos();
            if out.len() + written > limit {
                return Err(format!("a frame longer than {limit} bytes"));
            }
            out.extend_from_slice(&self.scratch[..written]);
            // Done when the input is used up and the decoder had no more output than room (else it may
            // hold more for the next call).
            if input.pos() == input.src.len() && written < STEP {
                return Ok(());
            }
        }
    }
}

/// The decompressed bytes of a zstd body, at most [`STEP`] bytes a piece however well a chunk compressed:
/// a piece is what the subscriber queues for its decoder, so its size bounds that queue's memory (one
/// body chunk of a 100k-pod snapshot decompressed whole was megabytes).
pub fn decompressed<S, E>(body: S) -> Result<impl Stream<Item = Result<Bytes, String>> + Send, String>
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
    E: std::fmt::Display,
{
    struct State<S> {
        body: S,
        zstd: ZstdChunks,
        input: Bytes,
        /// The last step filled its output: the decoder may hold more without further input.
        full: bool,
    }
    let state = State { body, zstd: ZstdChunks::new()?, input: Bytes::new(), full: false };
    Ok(futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if !state.input.is_empty() || state.full {
                let (used, piece) = match state.zstd.step(&state.input) {
                    Ok(step) => step,
                    Err(error) => return Some((Err(error), state)),
                };
                state.input.advance(used);
                state.full = piece.len() == STEP;
                if !piece.is_empty() {
                    return Some((Ok(piece), state));
                }
                continue;
            }
            match state.body.next().await? {
                Ok(chunk) => state.input = chunk,
                Err(error) => return Some((Err(format!("stream broken: {error}")), state)),
            }
        }
    }))
}

impl ZstdChunks {
    /// One decoder step over `input`: (input bytes used, at most [`STEP`] bytes of output).
    fn step(&mut self, input: &[u8]) -> Result<(usize, Bytes), String> {
        let mut input = InBuffer::around(input);
        let mut output = OutBuffer::around(&mut self.scratch[..]);
        self.decoder.run(&mut input, &mut output).map_err(undecodable)?;
        let written = output.pos();
        let used = input.pos();
        if used == 0 && written == 0 && !input.src.is_empty() {
            return Err("undecodable zstd stream: no progress".to_owned());
        }
        Ok((used, Bytes::copy_from_slice(&self.scratch[..written])))
    }
}

/// A decoder error as the replica reports it; a window past the limit is named as such (zstd's own
/// words, "requires too much memory", do not say which limit or whose).
fn undecodable(error: std::io::Error) -> String {
    if error.to_string().contains("too much memory") {
        return format!(
            "undecodable zstd stream: a frame asks for a window larger than {} MiB, the most a replica accepts",
            1 << (WINDOW_LOG_MAX - 20)
        );
    }
    format!("undecodable zstd stream: {error}")
}

/// A zstd frame whose header asks for a 2^`window_log` byte window, holding `content` in one raw block
/// (RFC 8878 §3.1.1): what a hostile or broken controller could send.
#[cfg(test)]
pub(crate) fn frame_with_window(window_log: u8, content: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd];
    // Frame header descriptor: no content size, not single-segment, no checksum, no dictionary.
    frame.push(0);
    // Window descriptor: exponent (window log − 10), mantissa 0.
    frame.push((window_log - 10) << 3);
    // One last raw block: bit 0 last, bits 1–2 type 0 (raw), size in the rest.
    let header = 1 | (u32::try_from(content.len()).unwrap_or(0) << 3);
    frame.extend_from_slice(&header.to_le_bytes()[..3]);
    frame.extend_from_slice(content);
    frame
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn frames(lines: &[&[u8]]) -> Vec<u8> {
        lines.iter().flat_map(|line| zstd::bulk::compress(line, 3).unwrap()).collect()
    }

    #[test]
    fn concatenated_frames_decode_whatever_the_chunking() {
        let big: Vec<u8> = (0..300_000u32).flat_map(|i| format!("{i},").into_bytes()).chain([b'\n']).collect();
        let lines: [&[u8]; 3] = [b"{\"kind\":\"bookmark\"}\n", &big, b"{\"kind\":\"delta\"}\n"];
        let body = frames(&lines);
        let expected: Vec<u8> = lines.concat();
        for chunk in [1, 7, 4096, body.len()] {
            let mut chunks = ZstdChunks::new().unwrap();
            let mut out = BytesMut::new();
            for piece in body.chunks(chunk) {
                chunks.feed(piece, &mut out, usize::MAX).unwrap();
            }
            assert_eq!(out.len(), expected.len(), "chunks of {chunk}");
            assert!(out[..] == expected[..], "chunks of {chunk}");
        }
    }

    #[test]
    fn a_frame_past_the_limit_is_refused_before_it_is_held() {
        let zeros = vec![0u8; 50 << 20];
        let body = frames(&[&zeros]);
        assert!(body.len() < 64 << 10, "zeros compress to {} bytes", body.len());
        let mut out = BytesMut::new();
        let error = ZstdChunks::new().unwrap().feed(&body, &mut out, 1 << 20).unwrap_err();
        assert!(error.contains("longer than"), "{error}");
        assert!(out.len() <= 1 << 20);
    }

    #[tokio::test]
    async fn a_body_decompresses_in_bounded_pieces() {
        let big: Vec<u8> = (0..2_000_000u32).flat_map(|i| format!("{i},").into_bytes()).chain([b'\n']).collect();
        let lines: [&[u8]; 3] = [b"{\"kind\":\"bookmark\"}\n", &big, b"{\"kind\":\"delta\"}\n"];
        let body = frames(&lines);
        let expected: Vec<u8> = lines.concat();
        for chunk in [1, 4096, body.len()] {
            let chunks: Vec<Result<Bytes, String>> =
                body.chunks(chunk).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
            let mut pieces = std::pin::pin!(decompressed(futures_util::stream::iter(chunks)).unwrap());
            let mut out = Vec::new();
            while let Some(piece) = pieces.next().await {
                let piece = piece.unwrap();
                assert!(!piece.is_empty() && piece.len() <= STEP, "a piece of {} bytes", piece.len());
                out.extend_from_slice(&piece);
            }
            assert!(out == expected, "chunks of {chunk}");
        }
        let chunks = vec![Ok::<_, String>(Bytes::from_static(b"not zstd at all"))];
        let mut pieces = std::pin::pin!(decompressed(futures_util::stream::iter(chunks)).unwrap());
        assert!(pieces.next().await.unwrap().unwrap_err().contains("undecodable"));
    }

    #[test]
    fn a_window_past_the_limit_is_refused_by_name_and_one_within_decodes() {
        let line = b"{\"kind\":\"bookmark\",\"generation\":1}\n";
        // 1 GiB asked for: refused at the frame header, nothing that size allocated.
        let mut out = BytesMut::new();
        let error = ZstdChunks::new().unwrap().feed(&frame_with_window(30, line), &mut out, 1 << 20).unwrap_err();
        assert!(error.contains("window larger than 8 MiB"), "{error}");
        assert!(out.is_empty());
        let error = ZstdChunks::new().unwrap().feed(&frame_with_window(24, line), &mut out, 1 << 20).unwrap_err();
        assert!(error.contains("window larger than 8 MiB"), "{error}");
        // The limit itself is accepted.
        ZstdChunks::new().unwrap().feed(&frame_with_window(23, line), &mut out, 1 << 20).unwrap();
        assert_eq!(&out[..], &line[..]);
    }

    #[test]
    fn garbage_is_an_error() {
        let mut out = BytesMut::new();
        let error = ZstdChunks::new().unwrap().feed(b"not zstd at all", &mut out, 1 << 20).unwrap_err();
        assert!(error.contains("undecodable"), "{error}");
    }
}

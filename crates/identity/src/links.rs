//! The links of a resolution: every scored candidate pair kept (at or above the lower of
//! `links_min_probability` and `attach_competitor_probability`), in the parts they were scored
//! in. Under a memory limit ([`crate::Settings::spill_dir`]) each part is written to an unnamed
//! temporary file as it is scored, a chunk at a time, and read back in order whenever the links
//! are walked (clustering, attaching, the links table): at ten million persons 51.7 million links
//! are 1.2 GB that would otherwise be held beside clustering's own work.

use std::sync::{Arc, Mutex};

use crate::{Error, Link, Result};

/// Bytes of one link in a file: `a`, `b`, `pattern` (4 each), the weight's bits (8), the rule
/// and whether it is accepted (1 each), little-endian.
const LINK_BYTES: usize = 22;
/// Links written or read at a time (720 KB).
const LINKS_CHUNK: usize = 1 << 15;
/// What a spilled part holds, for errors.
const WHAT: &str = "the links";

/// One part of the links: held, or in a file.
#[derive(Debug, Clone)]
enum Part {
    Held(Vec<Link>),
    /// `len` links of [`LINK_BYTES`] in an unnamed temporary file (gone with the process).
    Spilled {
        file: Arc<std::fs::File>,
        len: usize,
    },
}

impl Part {
    fn len(&self) -> usize {
        match self {
            Part::Held(v) => v.len(),
            Part::Spilled { len, .. } => *len,
        }
    }
}

/// The links of a resolution in the parts they were scored in, on several threads; the parts
/// joined in order are the links of one walk over the candidate pairs. They are not copied into
/// one list: at ten million persons the links take 1.2 GB, and joining them held that twice.
#[derive(Debug, Clone, Default)]
pub struct Links {
    parts: Vec<Part>,
    /// Where spilled parts are written (`None`: nothing is spilled).
    dir: Option<std::path::PathBuf>,
    /// The first error met reading a spilled part back, for [`Links::read_error`].
    failed: Arc<Mutex<Option<std::io::Error>>>,
}

/// Equal when they hold the same links in the same order, held or spilled.
impl PartialEq for Links {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl From<Vec<Link>> for Links {
    fn from(links: Vec<Link>) -> Self {
        Self::from_parts(vec![links])
    }
}

impl Links {
    /// The links of `parts`, joined in order.
    pub fn from_parts(parts: Vec<Vec<Link>>) -> Self {
        Self {
            parts: parts.into_iter().map(Part::Held).collect(),
            ..Self::default()
        }
    }

    /// The links the sinks gathered, joined in order; `dir` is where they spilled (as given to
    /// [`LinkSink::new`]). Fails when a sink could not write its links.
    pub fn from_sinks(sinks: Vec<LinkSink>, dir: Option<&std::path::Path>) -> Result<Self> {
        let parts = sinks
            .into_iter()
            .map(LinkSink::into_part)
            .collect::<std::io::Result<Vec<Part>>>()
            .map_err(Error::spill(WHAT, dir))?;
        Ok(Self {
            parts,
            dir: dir.map(std::path::Path::to_path_buf),
            ..Self::default()
        })
    }

    pub fn len(&self) -> usize {
        self.parts.iter().map(Part::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether any part is in a file.
    pub fn is_spilled(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Spilled { .. }))
    }

    /// Every link, in order. A spilled part that cannot be read back ends the walk early: check
    /// [`Links::read_error`] after it.
    pub fn iter(&self) -> LinksIter<'_> {
        self.range(0..self.len())
    }

    /// The links at positions `range` (of the joined order), in order; as [`Links::iter`].
    pub fn range(&self, range: std::ops::Range<usize>) -> LinksIter<'_> {
        let (mut part, mut at) = (0usize, range.start);
        while let Some(p) = self.parts.get(part)
            && at >= p.len()
        {
            at -= p.len();
            part += 1;
        }
        LinksIter {
            links: self,
            part,
            at,
            left: range.len().min(self.len().saturating_sub(range.start)),
            chunk: Vec::new(),
            next_in_chunk: 0,
        }
    }

    /// Fails when a walk since the last call met a spilled part it could not read back.
    pub fn read_error(&self) -> Result<()> {
        let failed = self.failed.lock().ok().and_then(|mut f| f.take());
        match failed {
            Some(e) => Err(Error::spill(WHAT, self.dir.as_deref())(e)),
            None => Ok(()),
        }
    }

    /// Keeps the links for which `keep` holds, in order, each marked by `accepted`; a spilled
    /// part is written again, a chunk at a time.
    pub fn settle(
        &mut self,
        keep: impl Fn(&Link) -> bool,
        accepted: impl Fn(&Link) -> bool,
    ) -> Result<()> {
        let failed = Error::spill(WHAT, self.dir.as_deref());
        for part in &mut self.parts {
            match part {
                Part::Held(links) => {
                    links.retain(&keep);
                    links.shrink_to_fit();
                    for link in links.iter_mut() {
                        link.accepted = accepted(link);
                    }
                }
                Part::Spilled { file, len } => {
                    let mut sink = LinkSink::new(self.dir.as_deref());
                    let mut chunk = Vec::new();
                    for from in (0..*len).step_by(LINKS_CHUNK) {
                        read_links(file, from, LINKS_CHUNK.min(*len - from), &mut chunk)
                            .map_err(&failed)?;
                        for mut link in chunk.drain(..).filter(&keep) {
                            link.accepted = accepted(&link);
                            sink.push(link);
                        }
                    }
                    *part = sink.into_part().map_err(&failed)?;
                }
            }
        }
        Ok(())
    }
}

/// The links of [`Links::iter`] or [`Links::range`], by value.
pub struct LinksIter<'a> {
    links: &'a Links,
    part: usize,
    /// The next link's position in its part.
    at: usize,
    /// Links still to come.
    left: usize,
    /// Links read from a spilled part, and the next of them.
    chunk: Vec<Link>,
    next_in_chunk: usize,
}

impl Iterator for LinksIter<'_> {
    type Item = Link;

    fn next(&mut self) -> Option<Link> {
        if let Some(link) = self.chunk.get(self.next_in_chunk) {
            self.next_in_chunk += 1;
            return Some(*link);
        }
        while self.left > 0 {
            let part = self.links.parts.get(self.part)?;
            if self.at >= part.len() {
                self.part += 1;
                self.at = 0;
                continue;
            }
            match part {
                Part::Held(links) => {
                    let link = links.get(self.at).copied();
                    self.at += 1;
                    self.left -= 1;
                    return link;
                }
                Part::Spilled { file, len } => {
                    let n = LINKS_CHUNK.min(len - self.at).min(self.left);
                    if let Err(e) = read_links(file, self.at, n, &mut self.chunk) {
                        if let Ok(mut failed) = self.links.failed.lock() {
                            failed.get_or_insert(e);
                        }
                        self.left = 0;
                        return None;
                    }
                    self.at += n;
                    self.left -= n;
                    self.next_in_chunk = 1;
                    return self.chunk.first().copied();
                }
            }
        }
        None
    }
}

/// Reads links `from..from + n` of a spilled part into `out` (replacing what it held).
fn read_links(
    file: &std::fs::File,
    from: usize,
    n: usize,
    out: &mut Vec<Link>,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut bytes = vec![0u8; n * LINK_BYTES];
    file.read_exact_at(&mut bytes, (from * LINK_BYTES) as u64)?;
    out.clear();
    for b in bytes.chunks_exact(LINK_BYTES) {
        out.push(decode(b).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "a link cut short")
        })?);
    }
    Ok(())
}

fn encode(link: &Link, out: &mut Vec<u8>) {
    out.extend_from_slice(&link.a.to_le_bytes());
    out.extend_from_slice(&link.b.to_le_bytes());
    out.extend_from_slice(&link.pattern.to_le_bytes());
    out.extend_from_slice(&link.weight.to_bits().to_le_bytes());
    out.push(link.rule);
    out.push(u8::from(link.accepted));
}

fn decode(b: &[u8]) -> Option<Link> {
    let u32_at =
        |i: usize| -> Option<u32> { Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?)) };
    Some(Link {
        a: u32_at(0)?,
        b: u32_at(4)?,
        pattern: u32_at(8)?,
        weight: f64::from_bits(u64::from_le_bytes(b.get(12..20)?.try_into().ok()?)),
        rule: *b.get(20)?,
        accepted: *b.get(21)? != 0,
    })
}

/// Where one part's links go as they are scored: a list, or (given a directory) an unnamed
/// temporary file there, written a chunk at a time.
#[derive(Debug, Default)]
pub struct LinkSink {
    held: Vec<Link>,
    dir: Option<std::path::PathBuf>,
    file: Option<std::fs::File>,
    written: usize,
    error: Option<std::io::Error>,
}

impl LinkSink {
    /// A sink that holds its links, or writes them to `dir`.
    pub fn new(dir: Option<&std::path::Path>) -> Self {
        Self {
            dir: dir.map(std::path::Path::to_path_buf),
            ..Self::default()
        }
    }

    pub fn push(&mut self, link: Link) {
        self.held.push(link);
        if self.dir.is_some() && self.held.len() >= LINKS_CHUNK {
            self.write_held();
        }
    }

    /// Ends the part: the links left are written, or the list shrunk to its size (grown by
    /// doubling, eight parts would hold up to twice their links together).
    pub fn end(&mut self) {
        if self.dir.is_some() {
            self.write_held();
            self.held = Vec::new();
        } else {
            self.held.shrink_to_fit();
        }
    }

    fn write_held(&mut self) {
        use std::io::Write;
        let Some(dir) = &self.dir else { return };
        if self.error.is_none() && !self.held.is_empty() {
            let written = (|| -> std::io::Result<()> {
                let file = match &mut self.file {
                    Some(file) => file,
                    None => self.file.insert(tempfile::tempfile_in(dir)?),
                };
                let mut bytes = Vec::with_capacity(self.held.len() * LINK_BYTES);
                for link in &self.held {
                    encode(link, &mut bytes);
                }
                file.write_all(&bytes)
            })();
            match written {
                Ok(()) => self.written += self.held.len(),
                Err(e) => self.error = Some(e),
            }
        }
        self.held.clear();
    }

    fn into_part(mut self) -> std::io::Result<Part> {
        if self.dir.is_none() {
            return Ok(Part::Held(self.held));
        }
        self.write_held();
        if let Some(e) = self.error {
            return Err(e);
        }
        Ok(match self.file {
            Some(file) => Part::Spilled {
                file: Arc::new(file),
                len: self.written,
            },
            None => Part::Held(Vec::new()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(a: u32) -> Link {
        Link {
            a,
            b: a + 1,
            rule: (a % 3) as u8,
            weight: f64::from(a) / 7.0 - 3.0,
            pattern: a * 5,
            accepted: a.is_multiple_of(4),
        }
    }

    /// The links `0..n` in parts of the given sizes, in sinks that spill to `dir` or hold.
    fn links(sizes: &[u32], dir: Option<&std::path::Path>) -> Result<Links> {
        let mut next = 0;
        let sinks = sizes
            .iter()
            .map(|n| {
                let mut sink = LinkSink::new(dir);
                for a in next..next + n {
                    sink.push(link(a));
                }
                next += n;
                sink.end();
                sink
            })
            .collect();
        Links::from_sinks(sinks, dir)
    }

    #[test]
    fn links_in_parts_read_as_one_list_in_order_held_or_spilled() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Internal(e.to_string()))?;
        // Parts empty, of a few links, and over two chunks.
        let sizes = [3, 0, 2, 2 * LINKS_CHUNK as u32 + 17, 5];
        let total: u32 = sizes.iter().sum();
        let held = links(&sizes, None)?;
        let spilled = links(&sizes, Some(dir.path()))?;
        assert!(!held.is_spilled() && spilled.is_spilled());
        for l in [&held, &spilled] {
            assert_eq!(l.len(), total as usize);
            assert!(l.iter().eq((0..total).map(link)));
            // Ranges across, within and past the parts and chunks.
            for (from, to) in [
                (1, 4),
                (3, 5),
                (4, 9),
                (total - 1, total + 3),
                (total, total + 1),
            ]
            .into_iter()
            .chain([(6, LINKS_CHUNK as u32 + 9), (LINKS_CHUNK as u32, total - 3)])
            {
                let expected: Vec<u32> = (from..to.min(total)).collect();
                let got: Vec<u32> = l.range(from as usize..to as usize).map(|l| l.a).collect();
                assert_eq!(got, expected, "{from}..{to}");
            }
            l.read_error()?;
        }
        assert!(held == spilled);
        // Settled alike: the odd ones kept, those over 100 accepted.
        let (mut held, mut spilled) = (held, spilled);
        for l in [&mut held, &mut spilled] {
            l.settle(|l| l.a % 2 == 1, |l| l.a > 100)?;
            let expected = (0..total).filter(|a| a % 2 == 1).map(|a| Link {
                accepted: a > 100,
                ..link(a)
            });
            assert!(l.iter().eq(expected));
            assert_eq!(l.range(1..3).map(|l| l.a).collect::<Vec<_>>(), vec![3, 5]);
        }
        assert!(held == spilled && spilled.is_spilled());
        assert_eq!(Links::from(vec![link(7)]).len(), 1);
        assert!(Links::default().is_empty());
        Ok(())
    }

    #[test]
    fn links_that_cannot_be_spilled_or_read_back_fail_naming_what_and_where() -> Result<()> {
        let missing = std::path::Path::new("/nonexistent-clientele-links");
        let Err(e) = links(&[LINKS_CHUNK as u32 + 1], Some(missing)) else {
            panic!("links spilled to a directory that does not exist");
        };
        let text = e.to_string();
        assert!(
            text.contains("the links") && text.contains("/nonexistent-clientele-links"),
            "{text}"
        );
        // A file shorter than its links: the walk ends, and says so.
        let dir = tempfile::tempdir().map_err(|e| Error::Internal(e.to_string()))?;
        let mut l = links(&[10], Some(dir.path()))?;
        if let Some(Part::Spilled { file, .. }) = l.parts.first() {
            file.set_len(5 * LINK_BYTES as u64)
                .map_err(|e| Error::Internal(e.to_string()))?;
        }
        assert_eq!(l.iter().count(), 0);
        assert!(matches!(l.read_error(), Err(Error::Spill { .. })));
        l.read_error()?;
        assert!(l.settle(|_| true, |_| true).is_err());
        Ok(())
    }
}

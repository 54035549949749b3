//! What a stream's readers share: the last few blocks of committed entries read back
//! from the store, each entry already carrying its `x-stream-offset` header and ready
//! to deliver. Readers at nearby offsets (ten consumers reading from `first`) read and
//! decode each block once between them; one that finds its block missing reads it and
//! the others wait for that read instead of repeating it.

use super::Stream;
use super::header;
use crate::model::Message;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// Entries per block; blocks start at multiples of it.
const BLOCK: u64 = 256;
/// About how many bytes one store read takes at most.
const READ_BYTES: usize = 4 * 1024 * 1024;
/// Blocks kept per stream.
const KEPT: usize = 8;
/// A block larger than this (large messages) is read for its reader but not kept.
const KEEP_BYTES: usize = 1024 * 1024;

/// Entries ready to deliver: (offset, message with its offset header).
pub(super) type Batch = Vec<(u64, Arc<Message>)>;

/// A block's entries, from its start up to `end` (the start of the next block, or
/// less when the read stopped at its byte limit).
pub(super) struct Block {
    end: u64,
    entries: Batch,
}

/// The blocks a stream keeps, oldest first.
#[derive(Default)]
pub(super) struct Blocks(VecDeque<(u64, Arc<OnceCell<Arc<Block>>>)>);

impl Blocks {
    /// The cell of the block at `start`, added (and the oldest dropped) if missing.
    fn cell(&mut self, start: u64) -> Arc<OnceCell<Arc<Block>>> {
        if let Some((_, c)) = self.0.iter().find(|(s, _)| *s == start) {
            return c.clone();
        }
        if self.0.len() >= KEPT {
            self.0.pop_front();
        }
        let c = Arc::new(OnceCell::new());
        self.0.push_back((start, c.clone()));
        c
    }

    fn forget(&mut self, start: u64) {
        self.0.retain(|(s, _)| *s != start);
    }
}

impl Stream {
    /// The committed entries from offset `from` on (below `readable`): from a shared
    /// block when `from` lies in a block wholly committed, else read for this reader.
    pub(super) async fn batch(&self, from: u64, readable: u64) -> Result<Batch, String> {
        let start = from - from % BLOCK;
        if start + BLOCK <= readable {
            let cell = self.blocks().cell(start);
            let block = cell
                .get_or_try_init(|| async {
                    let mut entries = self.read(start, BLOCK as usize).await?;
                    let read = entries.len();
                    entries.retain(|(o, _)| *o < start + BLOCK);
                    // The block is complete when the read reached its last offset or
                    // went past it (over a gap); a read cut short by its byte limit
                    // covers what it holds.
                    let end = match entries.last() {
                        Some((last, _)) if *last + 1 < start + BLOCK && read == entries.len() => {
                            last + 1
                        }
                        _ => start + BLOCK,
                    };
                    let bytes: usize = entries
                        .iter()
                        .map(|(_, m)| m.body.len() + m.raw_properties.len())
                        .sum();
                    if bytes > KEEP_BYTES {
                        self.blocks().forget(start);
                    }
                    Ok::<_, String>(Arc::new(Block { end, entries }))
                })
                .await?;
            if from < block.end {
                return Ok(block
                    .entries
                    .iter()
                    .filter(|(o, _)| *o >= from)
                    .cloned()
                    .collect());
            }
        }
        let mut batch = self.read(from, BLOCK as usize).await?;
        batch.retain(|(o, _)| *o < readable);
        Ok(batch)
    }

    /// Reads up to `count` entries from `from` off the async threads and gives each
    /// its offset header.
    async fn read(&self, from: u64, count: usize) -> Result<Batch, String> {
        let (store, id) = (self.store.clone(), self.id);
        tokio::task::spawn_blocking(move || {
            let entries = store
                .stream_read(id, from, count, READ_BYTES)
                .map_err(|e| e.to_string())?;
            Ok(entries
                .into_iter()
                .map(|e| {
                    let mut msg = e.message;
                    msg.raw_properties = header::with_offset(&msg.raw_properties, e.offset);
                    (e.offset, Arc::new(msg))
                })
                .collect())
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

//! Table lookups whose page accesses do not depend on what is looked up.
//!
//! SEV-SNP and TDX encrypt a guest's memory but do not hide which pages it touches: the host
//! can unmap a guest page and watch for the fault, one page at a time (a controlled-channel
//! attack). A token embedding read one row per token would tell a host watching the table's
//! pages which few tokens each prompt and output position could be.
//!
//! [`gather`] copies rows out of a table so that the sequence of pages touched is the same
//! whatever the rows asked for: it sweeps every page of the table in address order, touching
//! each once, and copies the part of each wanted row that lies in that page while it is there
//! into a staging buffer whose every page it also touches at every step. The rows come out of
//! staging afterwards in the caller's order. Per sweep it serves [`GROUP`] rows; a 1,536-wide
//! Q6_K table of 151,936 rows (Qwen2.5-1.5B) is 46,500 pages, one sweep each per group.
//!
//! What this does not hide: timing and instruction counts (a row copied takes longer than a page
//! touched), and cache-line accesses within a page to an attacker who can observe those
//! (README, "What the host still sees").

use zeroize::Zeroizing;

/// The page size the host observes.
pub const PAGE: usize = 4096;
/// Rows gathered per sweep of the table.
pub const GROUP: usize = 16;

/// One page touched, as the tests observe the sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Touch {
    /// The table's page with this index (from the table's first page).
    Table(usize),
    /// The staging buffer's page with this index.
    Staging(usize),
}

/// Why rows cannot be gathered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatherError {
    /// The table is not a whole number of rows.
    #[error("a table of {len} bytes is not rows of {row_bytes} bytes")]
    Shape {
        /// Table length.
        len: usize,
        /// Row length.
        row_bytes: usize,
    },
    /// A row id beyond the table.
    #[error("row {id} is outside a table of {rows} rows")]
    OutOfRange {
        /// The id.
        id: u32,
        /// Rows in the table.
        rows: usize,
    },
}

/// Rows `ids` of `table` (rows of `row_bytes` bytes), in order, read obliviously.
pub fn gather(
    table: &[u8],
    row_bytes: usize,
    ids: &[u32],
) -> Result<Zeroizing<Vec<u8>>, GatherError> {
    gather_observed(table, row_bytes, ids, &mut |_| {})
}

/// [`gather`], reporting every page it touches to `observe`.
pub fn gather_observed(
    table: &[u8],
    row_bytes: usize,
    ids: &[u32],
    observe: &mut impl FnMut(Touch),
) -> Result<Zeroizing<Vec<u8>>, GatherError> {
    if row_bytes == 0 || !table.len().is_multiple_of(row_bytes) {
        return Err(GatherError::Shape {
            len: table.len(),
            row_bytes,
        });
    }
    let rows = table.len() / row_bytes;
    if let Some(&id) = ids.iter().find(|&&id| id as usize >= rows) {
        return Err(GatherError::OutOfRange { id, rows });
    }
    let mut out = Zeroizing::new(vec![0u8; ids.len() * row_bytes]);
    // Each group's rows land in staging, one slot per row; staging starts on a page boundary
    // so that it spans the same pages in every call.
    let len = GROUP * row_bytes;
    let mut backing = Zeroizing::new(vec![0u8; len + PAGE]);
    let offset = (PAGE - backing.as_ptr() as usize % PAGE) % PAGE;
    let staging = &mut backing[offset..offset + len];
    for (group, dst) in ids.chunks(GROUP).zip(out.chunks_mut(len)) {
        sweep(table, row_bytes, group, staging, observe);
        dst.copy_from_slice(&staging[..dst.len()]);
    }
    Ok(out)
}

/// Where `buf`'s pages begin: offsets into `buf` of each page it spans (the first may be
/// partial).
fn page_starts(buf: &[u8]) -> impl Iterator<Item = usize> {
    // The first page boundary after the buffer's start (a whole page on when it starts on one).
    let next = PAGE - buf.as_ptr() as usize % PAGE;
    std::iter::once(0)
        .chain((next..buf.len()).step_by(PAGE))
        .filter(move |_| !buf.is_empty())
}

/// One pass over every page of `table`, copying `group`'s rows into `staging`.
fn sweep(
    table: &[u8],
    row_bytes: usize,
    group: &[u32],
    staging: &mut [u8],
    observe: &mut impl FnMut(Touch),
) {
    let staging_pages: Vec<usize> = page_starts(staging).collect();
    let table_pages: Vec<usize> = page_starts(table).collect();
    for (p, &start) in table_pages.iter().enumerate() {
        let end = table_pages.get(p + 1).copied().unwrap_or(table.len());
        // Touch this table page, then every staging page, whatever is copied.
        std::hint::black_box(table[start]);
        observe(Touch::Table(p));
        for (s, &at) in staging_pages.iter().enumerate() {
            staging[at] = std::hint::black_box(staging[at]);
            observe(Touch::Staging(s));
        }
        for (slot, &id) in group.iter().enumerate() {
            let row = id as usize * row_bytes..(id as usize + 1) * row_bytes;
            let (lo, hi) = (row.start.max(start), row.end.min(end));
            if lo < hi {
                let at = slot * row_bytes + (lo - row.start);
                staging[at..at + (hi - lo)].copy_from_slice(&table[lo..hi]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: usize, row_bytes: usize) -> Vec<u8> {
        (0..rows * row_bytes)
            .map(|i| (i * 31 + i / row_bytes) as u8)
            .collect()
    }

    #[test]
    fn rows_come_out_as_a_plain_lookup_would_give_them() {
        let row_bytes = 1260; // a 1,536-wide Q6_K row: rows straddle pages
        let t = table(100, row_bytes);
        let ids: Vec<u32> = vec![
            0, 99, 3, 3, 57, 1, 98, 42, 7, 0, 13, 64, 65, 66, 99, 12, 5, 88,
        ];
        let got = gather(&t, row_bytes, &ids).expect("gathers");
        for (i, &id) in ids.iter().enumerate() {
            let want = &t[id as usize * row_bytes..][..row_bytes];
            assert_eq!(
                &got[i * row_bytes..][..row_bytes],
                want,
                "row {i} (id {id})"
            );
        }
        assert!(matches!(
            gather(&t, row_bytes, &[100]),
            Err(GatherError::OutOfRange { id: 100, rows: 100 })
        ));
        assert!(matches!(
            gather(&t[1..], row_bytes, &[0]),
            Err(GatherError::Shape { .. })
        ));
    }

    #[test]
    fn the_pages_touched_do_not_depend_on_the_rows_asked_for() {
        let row_bytes = 1260;
        let t = table(200, row_bytes);
        let trace = |ids: &[u32]| {
            let mut seen = Vec::new();
            gather_observed(&t, row_bytes, ids, &mut |p| seen.push(p)).expect("gathers");
            seen
        };
        let a = trace(&[0, 1, 2, 3, 4]);
        let b = trace(&[199, 17, 17, 150, 88]);
        assert_eq!(a, b);
        // Every table page once per sweep, in address order, each followed by every staging
        // page.
        let table_touches: Vec<usize> = a
            .iter()
            .filter_map(|p| match p {
                Touch::Table(i) => Some(*i),
                Touch::Staging(_) => None,
            })
            .collect();
        let pages = page_starts(&t).count();
        assert_eq!(table_touches, (0..pages).collect::<Vec<_>>());
        assert!(pages >= t.len() / PAGE);
        // More rows than a group: one sweep per group, the same for any ids.
        let many: Vec<u32> = (0..40).collect();
        let other: Vec<u32> = (0..40).rev().map(|i| i * 3).collect();
        assert_eq!(trace(&many), trace(&other));
        assert_eq!(trace(&many).len(), 3 * a.len());
    }
}

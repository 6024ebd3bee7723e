//! Runs of consecutive items: the one grouping loop behind every "pages `s..s+n`",
//! "blocks on consecutive pages" and "owner on consecutive pages and blocks" run in
//! daxlink.

use std::iter::Peekable;

/// Groups `items` into runs, lazily: each run is its first item and its length `n`,
/// and the next item joins it while `continues(first, n, next)` says `next` is the
/// `n`-th successor of `first`.
pub fn runs<I, F>(items: I, continues: F) -> Runs<I::IntoIter, F>
where
    I: IntoIterator,
    F: FnMut(&I::Item, u64, &I::Item) -> bool,
{
    Runs { items: items.into_iter().peekable(), continues }
}

/// Runs of consecutive numbers: `(first, count)`.
pub fn number_runs(items: impl IntoIterator<Item = u64>) -> impl Iterator<Item = (u64, u64)> {
    runs(items, |s, n, i| s + n == *i)
}

pub struct Runs<I: Iterator, F> {
    items: Peekable<I>,
    continues: F,
}

impl<I, F> Iterator for Runs<I, F>
where
    I: Iterator,
    F: FnMut(&I::Item, u64, &I::Item) -> bool,
{
    type Item = (I::Item, u64);

    fn next(&mut self) -> Option<(I::Item, u64)> {
        let Runs { items, continues } = self;
        let first = items.next()?;
        let mut n = 1;
        while items.next_if(|x| continues(&first, n, x)).is_some() {
            n += 1;
        }
        Some((first, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_numbers_group_and_gaps_split() {
        let got: Vec<_> = number_runs([1, 2, 3, 7, 9, 10]).collect();
        assert_eq!(got, vec![(1, 3), (7, 1), (9, 2)]);
        assert_eq!(number_runs([]).count(), 0);
    }

    #[test]
    fn the_rule_sees_the_run_so_far() {
        // Pairs that advance together, as (block, page) runs do.
        let pairs = [(10, 100), (11, 101), (12, 200), (13, 201)];
        let got: Vec<_> = runs(pairs, |s, n, x| s.0 + n == x.0 && s.1 + n == x.1).collect();
        assert_eq!(got, vec![((10, 100), 2), ((12, 200), 2)]);
    }
}

//! Tokenising a sparse array: what each token costs, how zero runs are split into matches, and
//! where far matches pay; counting ([`Freqs`]) is one of the two token sinks, writing the other.

use super::tables::*;

/// What each token costs in bits (symbol plus extra bits) under some code.
pub(super) struct Costs {
    lit: [u32; 256],
    /// Length symbol plus its extra bits, per match length.
    len: [u32; MAX_MATCH + 1],
    /// Distance symbol plus its extra bits, per distance code.
    dist: [u32; DIST],
}

/// The price of a symbol a code lacks: high enough never to be chosen, low enough that sums of
/// a few hundred cannot overflow.
const UNUSABLE: u32 = 1 << 20;

impl Costs {
    /// A guess for the first round, shaped like sparse lists: literal zeros are frequent (one per
    /// zero run), 258 is the commonest length of long runs, only distance 1 is used.
    pub(super) fn initial() -> Self {
        let mut c = Costs {
            lit: [6; 256],
            len: [UNUSABLE; MAX_MATCH + 1],
            dist: [UNUSABLE; DIST],
        };
        c.lit[0] = 2;
        for m in MIN_MATCH..=MAX_MATCH {
            c.len[m] = if m == MAX_MATCH { 2 } else { 6 } + symbol_extra(len_symbol(m));
        }
        c.dist[0] = 1;
        c
    }

    /// Exact costs under a code. Symbols without a code are unusable, so a parse priced this
    /// way only uses symbols that code had (the tree written is rebuilt from the parse's own
    /// counts, so that is about quality, not validity).
    pub(super) fn from_lens(lit: &[u8; LITLEN], dist: &[u8; DIST]) -> Self {
        let bits = |l: u8, extra: u32| {
            if l == 0 {
                UNUSABLE
            } else {
                u32::from(l) + extra
            }
        };
        let mut c = Costs {
            lit: [UNUSABLE; 256],
            len: [UNUSABLE; MAX_MATCH + 1],
            dist: [UNUSABLE; DIST],
        };
        for (cost, &l) in c.lit.iter_mut().zip(lit) {
            *cost = bits(l, 0);
        }
        for m in MIN_MATCH..=MAX_MATCH {
            let sym = len_symbol(m);
            c.len[m] = bits(lit[sym], symbol_extra(sym));
        }
        for (code, cost) in c.dist.iter_mut().enumerate() {
            *cost = bits(dist[code], u32::from(DIST_EXTRA[code]));
        }
        c
    }

    /// Ideal code lengths from an earlier parse's counts. Unseen symbols get a plausible price
    /// instead of being unusable, so the next round can start using them (the first rounds only
    /// know distance 1).
    pub(super) fn estimate(freqs: &Freqs) -> Self {
        fn ideal(f: u64, total: u64) -> u32 {
            let p = if f == 0 { 0.25 } else { f as f64 } / total.max(1) as f64;
            (-p.log2()).round().clamp(1.0, MAX_BITS as f64) as u32
        }
        let total: u64 = freqs.lit.iter().sum();
        let mut c = Costs {
            lit: [0; 256],
            len: [0; MAX_MATCH + 1],
            dist: [0; DIST],
        };
        for (cost, &f) in c.lit.iter_mut().zip(&freqs.lit) {
            *cost = ideal(f, total);
        }
        for m in MIN_MATCH..=MAX_MATCH {
            let sym = len_symbol(m);
            c.len[m] = ideal(freqs.lit[sym], total) + symbol_extra(sym);
        }
        // Round 0 only counted distance 1; price every other distance code as if it were used
        // by an eighth of the matches, so far matches get a fair first try.
        let matches: u64 = freqs.dist.iter().sum();
        for (code, cost) in c.dist.iter_mut().enumerate() {
            let f = freqs.dist[code].max(matches / 8);
            *cost = ideal(f, matches + matches / 8 * DIST as u64) + u32::from(DIST_EXTRA[code]);
        }
        c
    }
}

/// A tokeniser priced by one set of [`Costs`]. Counting and writing run the same parser, so
/// the tree built from the counts has a code for every token written.
pub(super) struct Parser {
    costs: Costs,
    /// Whether to look for matches at distances above 1 (see [`Parser::far_match`]).
    far: bool,
    /// `zero_step[t]`: how to start covering `t < TAIL` zeros that follow a zero: 0 for one
    /// literal zero, else the length of one distance-1 match.
    zero_step: [u16; TAIL],
    /// And what that cheapest cover costs.
    zero_cost: [u32; TAIL],
    /// The cheapest length symbol with its extra bits, bounding what any match can cost.
    cheapest_len: u32,
}

impl Parser {
    pub(super) fn new(costs: Costs, far: bool) -> Self {
        // The cheapest cover of t zeros is a shortest-path problem over t = 0..TAIL: one step
        // is a literal zero or a distance-1 match of 3..=258. Lengths sharing a length symbol
        // cost the same, so each symbol only needs the minimum over its window of earlier
        // costs, which `window[l]` (minimum of the 2^l entries ending at an index) gives in
        // O(1); indices are offset by `PAD` so windows reaching below 0 read as unreachable.
        const PAD: usize = MAX_MATCH;
        const UNREACHABLE: u32 = u32::MAX / 4;
        let mut window = [[UNREACHABLE; PAD + TAIL]; 6];
        let range_min = |window: &[[u32; PAD + TAIL]; 6], lo: usize, hi: usize| {
            let l = (usize::BITS - 1 - (hi - lo + 1).leading_zeros()) as usize;
            window[l][hi].min(window[l][lo + (1 << l) - 1])
        };
        let symbols: [(usize, usize, u32); 29] = std::array::from_fn(|c| {
            let lo = usize::from(LEN_BASE[c]);
            let hi = (lo + (1 << LEN_EXTRA[c]) - 1).min(if lo == MAX_MATCH {
                MAX_MATCH
            } else {
                MAX_MATCH - 1
            });
            (lo, hi, costs.len[lo] + costs.dist[0])
        });
        let mut zero_cost = [0u32; TAIL];
        let mut zero_step = [0u16; TAIL];
        for level in &mut window {
            level[PAD] = 0;
        }
        for t in 1..TAIL {
            let mut cost = zero_cost[t - 1] + costs.lit[0];
            let mut pick = None;
            for &(lo, hi, c) in symbols.iter().take_while(|&&(lo, _, _)| lo <= t) {
                let m = c + range_min(&window, PAD + t - hi, PAD + t - lo);
                if m < cost {
                    cost = m;
                    pick = Some((lo, hi, c));
                }
            }
            let step = pick.map_or(0, |(lo, hi, c)| {
                (lo..=hi.min(t))
                    .find(|&m| zero_cost[t - m] + c == cost)
                    .unwrap_or(0)
            });
            zero_cost[t] = cost;
            zero_step[t] = step as u16;
            let x = PAD + t;
            window[0][x] = cost;
            for l in 1..6 {
                window[l][x] = window[l - 1][x].min(window[l - 1][x - (1 << (l - 1))]);
            }
        }
        Parser {
            cheapest_len: costs.len[MIN_MATCH..]
                .iter()
                .copied()
                .min()
                .unwrap_or(UNUSABLE),
            costs,
            far,
            zero_step,
            zero_cost,
        }
    }

    /// Bits for `n` zeros; after a non-zero byte (or at the start) the first must be a literal,
    /// as a distance-1 match would copy the non-zero byte.
    fn zeros_cost(&self, n: usize, after_zero: bool) -> u64 {
        if n == 0 {
            return 0;
        }
        let (lead, n) = if after_zero {
            (0, n)
        } else {
            (u64::from(self.costs.lit[0]), n - 1)
        };
        if n < TAIL {
            lead + u64::from(self.zero_cost[n])
        } else {
            let whole = n / MAX_MATCH - 1;
            let whole_cost = u64::from(self.costs.len[MAX_MATCH] + self.costs.dist[0]);
            lead + whole as u64 * whole_cost + u64::from(self.zero_cost[n - whole * MAX_MATCH])
        }
    }

    fn zeros(&self, n: usize, after_zero: bool, sink: &mut impl Sink) {
        if n == 0 {
            return;
        }
        let mut rest = n;
        if !after_zero {
            sink.literal(0);
            rest -= 1;
        }
        if rest >= TAIL {
            let whole = rest / MAX_MATCH - 1;
            sink.matches(MAX_MATCH, whole as u64);
            rest -= whole * MAX_MATCH;
        }
        while rest > 0 {
            match self.zero_step[rest] as usize {
                0 => {
                    sink.literal(0);
                    rest -= 1;
                }
                m => {
                    sink.matches(m, 1);
                    rest -= m;
                }
            }
        }
    }

    /// Walks the array, writing its tokens to `sink`; `decide` chooses at each item (given the
    /// zeros before it not yet written and whether the last byte written is a zero) whether a
    /// far match starts there.
    pub(super) fn walk(
        &self,
        arr: &Sparse<'_>,
        sink: &mut impl Sink,
        mut decide: impl FnMut(usize, usize, bool) -> Option<Far>,
    ) {
        let items = arr.items;
        let (mut pos, mut after_zero, mut i) = (0, false, 0);
        while i < items.len() {
            let (off, byte) = items[i];
            let run = off - pos;
            match decide(i, run, after_zero) {
                Some(far) => {
                    self.zeros(run - usize::from(far.before), after_zero, sink);
                    sink.far(usize::from(far.len), usize::from(far.dist));
                    pos = items[far.last].0 + 1 + usize::from(far.after);
                    after_zero = far.after > 0;
                    i = far.last + 1;
                }
                None => {
                    self.zeros(run, after_zero, sink);
                    sink.literal(byte);
                    pos = off + 1;
                    after_zero = false;
                    i += 1;
                }
            }
        }
        self.zeros(arr.len - pos, after_zero, sink);
    }

    /// Parses the array: its symbol counts, and the far matches chosen (replayed when writing,
    /// so the search runs once per round).
    pub(super) fn parse(&self, arr: &Sparse<'_>) -> (Freqs, Vec<Far>) {
        let mut freqs = Freqs {
            lit: [0; LITLEN],
            dist: [0; DIST],
        };
        let mut fars = Vec::new();
        if self.far {
            let mut sources = Sources::new();
            let mut seen = 0;
            self.walk(arr, &mut freqs, |i, run, after_zero| {
                // Every item before this one, whether written plainly or inside a match, can
                // be a source now.
                for k in seen..i {
                    sources.push(arr.items[k].1, k);
                }
                seen = i;
                let far = self.far_match(arr, i, run, after_zero, &sources);
                fars.extend(far);
                far
            });
        } else {
            self.walk(arr, &mut freqs, |_, _, _| None);
        }
        freqs.lit[END_OF_BLOCK] = 1;
        (freqs, fars)
    }

    /// The most profitable match at a distance above 1 that covers item `i` (preceded by `run`
    /// zeros not yet written), if any beats writing it the plain way.
    ///
    /// A source is an earlier item with the same byte. The match copies zeros ahead of the
    /// byte, the byte, and zeros after it, through following items as long as gaps and bytes
    /// agree. Written plainly, a byte and the zeros after it cost a literal, a literal zero and
    /// a distance-1 match; a far match replaces them with one length and one distance, which
    /// pays when runs are long or patterns repeat. The comparison spans up to the next item,
    /// since a match that ends inside a zero run also spares that run's leading literal zero.
    fn far_match(
        &self,
        arr: &Sparse<'_>,
        i: usize,
        run: usize,
        after_zero: bool,
        sources: &Sources,
    ) -> Option<Far> {
        let items = arr.items;
        let (off, byte) = items[i];
        let lit = |b: u8| u64::from(self.costs.lit[b as usize]);
        let gap = arr.gap_after(i);
        let plain_one = self.zeros_cost(run, after_zero) + lit(byte) + self.zeros_cost(gap, false);
        let (run_rest, gap_rest) = (run % MAX_MATCH, gap % MAX_MATCH);
        let mut best: Option<Far> = None;
        let mut best_gain = 0;
        for j in sources.candidates(byte) {
            let dist = off - items[j].0;
            if dist > WINDOW {
                break;
            }
            let (mut k, mut src) = (i, j);
            let (mut end_gap, mut src_gap) = (gap, arr.gap_after(j));
            let mut plain = plain_one;
            while end_gap == src_gap
                && k + 1 < items.len()
                && items[k + 1].1 == items[src + 1].1
                && items[k + 1].0 - off < MAX_MATCH
            {
                k += 1;
                src += 1;
                (end_gap, src_gap) = (arr.gap_after(k), arr.gap_after(src));
                plain += lit(items[k].1) + self.zeros_cost(end_gap, false);
            }
            let span = items[k].0 + 1 - off;
            let room = MAX_MATCH - span;
            let (most_before, most_after) = (run.min(arr.gap_before(j)), end_gap.min(src_gap));
            let dist_cost = self.costs.dist[dist_code(dist)];
            if plain <= u64::from(dist_cost + self.cheapest_len) + best_gain {
                continue;
            }
            // How many zeros to copy on either side: as many as fit, or as many as leave the
            // rest of the run a multiple of 258, so that it costs only whole cheap matches (the
            // match itself is then often 258 long, the cheapest length too).
            let befores = [most_before.min(room), run_rest];
            for (n, &before) in befores.iter().enumerate() {
                if before > most_before.min(room) || (n > 0 && before == befores[0]) {
                    continue;
                }
                let fit = most_after.min(room - before);
                let afters = [
                    fit,
                    if k == i {
                        gap_rest
                    } else {
                        end_gap % MAX_MATCH
                    },
                ];
                for (m, &after) in afters.iter().enumerate() {
                    if after > fit || (m > 0 && after == fit) {
                        continue;
                    }
                    let len = before + span + after;
                    if len < MIN_MATCH {
                        continue;
                    }
                    let far = self.zeros_cost(run - before, after_zero)
                        + u64::from(self.costs.len[len] + dist_cost)
                        + self.zeros_cost(end_gap - after, after > 0);
                    if far < plain && plain - far > best_gain {
                        best_gain = plain - far;
                        // All fit in u16: lengths are at most 258, distances at most 32768.
                        best = Some(Far {
                            first: i,
                            last: k,
                            before: before as u16,
                            after: after as u16,
                            len: len as u16,
                            dist: dist as u16,
                        });
                    }
                }
            }
            // Farther sources have dearer distances (more extra bits); one covering more zeros
            // or further items might still win, but once this one covers every zero it could,
            // stop: spans of several items are rare, and the search time is the encoder's.
            if k == i && most_before >= run.min(room) && most_after >= gap.min(room) {
                break;
            }
        }
        best
    }
}

/// A far match chosen by [`Parser::far_match`], covering items `first..=last`.
#[derive(Clone, Copy)]
pub(super) struct Far {
    pub(super) first: usize,
    pub(super) last: usize,
    /// Zeros copied ahead of the first item.
    before: u16,
    /// Zeros copied after the last item.
    after: u16,
    len: u16,
    pub(super) dist: u16,
}

/// The sparse array, with the zero gaps around each item.
pub(super) struct Sparse<'a> {
    pub(super) len: usize,
    pub(super) items: &'a [(usize, u8)],
}

impl Sparse<'_> {
    fn gap_before(&self, i: usize) -> usize {
        match i {
            0 => self.items[0].0,
            _ => self.items[i].0 - self.items[i - 1].0 - 1,
        }
    }

    fn gap_after(&self, i: usize) -> usize {
        let next = self.items.get(i + 1).map_or(self.len, |&(off, _)| off);
        next - self.items[i].0 - 1
    }
}

/// How many earlier items with the same byte are tried as far-match sources, nearest first
/// since nearer distances are cheaper. More buys little and costs time linearly.
pub(super) const CANDIDATES: usize = 8;

/// Where far matches may copy from: the last [`CANDIDATES`] items of each byte value.
struct Sources {
    slots: Vec<usize>,
    head: [u8; 256],
}

impl Sources {
    fn new() -> Self {
        Sources {
            slots: vec![usize::MAX; 256 * CANDIDATES],
            head: [0; 256],
        }
    }

    fn push(&mut self, byte: u8, item: usize) {
        let b = byte as usize;
        let h = (self.head[b] as usize + 1) % CANDIDATES;
        self.head[b] = h as u8;
        self.slots[b * CANDIDATES + h] = item;
    }

    /// Earlier items with this byte, newest first.
    fn candidates(&self, byte: u8) -> impl Iterator<Item = usize> + '_ {
        let b = byte as usize;
        let h = self.head[b] as usize;
        let row = &self.slots[b * CANDIDATES..(b + 1) * CANDIDATES];
        (0..CANDIDATES)
            .map(move |k| row[(h + CANDIDATES - k) % CANDIDATES])
            .take_while(|&item| item != usize::MAX)
    }
}

/// Receives the token stream of an array; counting and writing are the two sinks.
pub(super) trait Sink {
    fn literal(&mut self, byte: u8);
    /// `count` distance-1 matches of length `len`.
    fn matches(&mut self, len: usize, count: u64);
    fn far(&mut self, len: usize, dist: usize);
}

/// Symbol frequencies of one parse.
pub(super) struct Freqs {
    pub(super) lit: [u64; LITLEN],
    pub(super) dist: [u64; DIST],
}

impl Freqs {
    /// Bits of the block body (symbols and extra bits) under the given code.
    pub(super) fn data_bits(&self, lit: &[u8; LITLEN], dist: &[u8; DIST]) -> u64 {
        let lits: u64 = self
            .lit
            .iter()
            .zip(lit)
            .enumerate()
            .map(|(sym, (&f, &l))| f * u64::from(u32::from(l) + symbol_extra(sym)))
            .sum();
        let dists: u64 = self
            .dist
            .iter()
            .zip(dist)
            .zip(DIST_EXTRA)
            .map(|((&f, &l), e)| f * u64::from(l + e))
            .sum();
        lits + dists
    }
}

impl Sink for Freqs {
    fn literal(&mut self, byte: u8) {
        self.lit[byte as usize] += 1;
    }

    fn matches(&mut self, len: usize, count: u64) {
        self.lit[len_symbol(len)] += count;
        self.dist[0] += count;
    }

    fn far(&mut self, len: usize, dist: usize) {
        self.lit[len_symbol(len)] += 1;
        self.dist[dist_code(dist)] += 1;
    }
}

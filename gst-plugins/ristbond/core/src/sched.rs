//! Link scheduling of original packets: smooth weighted round-robin (the nginx
//! algorithm). Kept separate from the sender so a capacity-driven scheduler can replace
//! it without touching the RTP/RTCP logic.

use crate::LinkId;

#[derive(Debug, Clone)]
struct Entry {
    id: LinkId,
    weight: u32,
    current: i64,
}

/// Smooth weighted round-robin: over any window of `sum(weights)` picks, each link is
/// chosen exactly `weight` times, and picks of one link are spread out evenly.
#[derive(Debug, Default, Clone)]
pub(crate) struct WeightedRoundRobin {
    entries: Vec<Entry>,
}

impl WeightedRoundRobin {
    /// Add (or re-weight) a link; weights below 1 count as 1.
    pub(crate) fn set(&mut self, id: LinkId, weight: u32) {
        let weight = weight.max(1);
        if let Some(e) = self.entries.iter_mut().find(|e| e.id == id) {
            e.weight = weight;
        } else {
            self.entries.push(Entry {
                id,
                weight,
                current: 0,
            });
            self.entries.sort_by_key(|e| e.id);
        }
    }

    /// Remove a link; returns whether it was there.
    pub(crate) fn remove(&mut self, id: LinkId) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.id != id);
        before != self.entries.len()
    }

    /// Weight in use for `id`.
    pub(crate) fn weight(&self, id: LinkId) -> Option<u32> {
        self.entries.iter().find(|e| e.id == id).map(|e| e.weight)
    }

    /// Choose the link for the next packet; `None` without links.
    pub(crate) fn pick(&mut self) -> Option<LinkId> {
        let total: i64 = self.entries.iter().map(|e| i64::from(e.weight)).sum();
        for e in &mut self.entries {
            e.current += i64::from(e.weight);
        }
        // Highest current wins; ties go to the lowest id (entries are sorted by id).
        let best = self.entries.iter_mut().rev().max_by_key(|e| e.current)?;
        best.current -= total;
        Some(best.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_weights_alternate() {
        let mut s = WeightedRoundRobin::default();
        s.set(0, 1);
        s.set(1, 1);
        s.set(2, 1);
        let picks: Vec<_> = (0..6).map(|_| s.pick().unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weights_are_respected_and_smooth() {
        let mut s = WeightedRoundRobin::default();
        s.set(7, 5);
        s.set(8, 1);
        s.set(9, 1);
        let picks: Vec<_> = (0..7).map(|_| s.pick().unwrap()).collect();
        assert_eq!(picks.iter().filter(|&&p| p == 7).count(), 5);
        // nginx's example: a a b a c a a
        assert_eq!(picks, vec![7, 7, 8, 7, 9, 7, 7]);
        assert_eq!(s.weight(7), Some(5));
    }

    #[test]
    fn remove_and_empty() {
        let mut s = WeightedRoundRobin::default();
        assert_eq!(s.pick(), None);
        s.set(1, 0);
        assert_eq!(s.weight(1), Some(1));
        assert!(s.remove(1));
        assert!(!s.remove(1));
        assert_eq!(s.pick(), None);
    }
}

//! Size bounds of the auth core's in-memory caches.

use std::collections::HashMap;

/// Keeps `map` under `max` entries: drops those no longer `current`, or all.
pub(super) fn make_room<K, V>(map: &mut HashMap<K, V>, max: usize, current: impl Fn(&V) -> bool) {
    if map.len() >= max {
        map.retain(|_, v| current(v));
        if map.len() >= max {
            map.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_made_by_dropping_stale_entries_first() {
        let mut map: HashMap<u32, bool> = (0..4).map(|i| (i, i % 2 == 0)).collect();
        make_room(&mut map, 5, |current| *current);
        assert_eq!(map.len(), 4, "under the bound: nothing goes");
        make_room(&mut map, 4, |current| *current);
        assert_eq!(map.len(), 2, "the stale half goes");
        make_room(&mut map, 2, |_| true);
        assert!(
            map.is_empty(),
            "all current and still full: everything goes"
        );
    }
}

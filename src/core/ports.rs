//! Port assignment: pinned ports as declared, the rest from `server.port_range`, stable for a
//! slot across reloads and restarts.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{DesiredState, SlotName};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error(
        "no free port left in server.port_range {lo}-{hi} for slot {slot}: {used} ports are taken"
    )]
    RangeExhausted {
        slot: SlotName,
        lo: u16,
        hi: u16,
        used: usize,
    },
}

/// Assigns a port to every slot that runs a process. Slots keep the port they had in
/// `previous` while it is still in range and not pinned by another slot; new slots get the
/// lowest free port. Validation already refuses configs with more slots than ports, so the
/// error is a safety net.
pub fn assign_ports(
    desired: &DesiredState,
    previous: &BTreeMap<SlotName, u16>,
) -> Result<BTreeMap<SlotName, u16>, PortError> {
    let [lo, hi] = desired.server.port_range;
    let in_range = |p: u16| (lo..=hi).contains(&p);
    let process_slots = desired
        .slots
        .iter()
        .filter(|(_, s)| s.provider.runs_process());

    let mut out = BTreeMap::new();
    let mut taken = BTreeSet::new();
    for (name, spec) in process_slots.clone() {
        if let Some(p) = spec.port {
            out.insert(name.clone(), p);
            taken.insert(p);
        }
    }
    for (name, spec) in process_slots.clone() {
        if spec.port.is_some() {
            continue;
        }
        if let Some(&p) = previous.get(name)
            && in_range(p)
            && !taken.contains(&p)
        {
            out.insert(name.clone(), p);
            taken.insert(p);
        }
    }
    for (name, _) in process_slots {
        if out.contains_key(name) {
            continue;
        }
        let free =
            (lo..=hi)
                .find(|p| !taken.contains(p))
                .ok_or_else(|| PortError::RangeExhausted {
                    slot: name.clone(),
                    lo,
                    hi,
                    used: taken.len(),
                })?;
        out.insert(name.clone(), free);
        taken.insert(free);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ProviderKind, SlotSpec};

    fn name(s: &str) -> SlotName {
        SlotName::parse(s).unwrap()
    }

    fn desired(slots: &[(&str, Option<u16>)], range: [u16; 2]) -> DesiredState {
        let mut d = DesiredState::default();
        d.server.port_range = range;
        for (n, port) in slots {
            let mut s = SlotSpec::new(ProviderKind::LlamaCpp, Some("/m.gguf"));
            s.port = *port;
            d.slots.insert(name(n), s);
        }
        d
    }

    #[test]
    fn new_slots_get_the_lowest_free_ports() {
        let d = desired(&[("a", None), ("b", None)], [9000, 9009]);
        let p = assign_ports(&d, &BTreeMap::new()).unwrap();
        assert_eq!(p[&name("a")], 9000);
        assert_eq!(p[&name("b")], 9001);
    }

    #[test]
    fn ports_are_stable_when_slots_are_added_before_others() {
        let d1 = desired(&[("m", None)], [9000, 9009]);
        let p1 = assign_ports(&d1, &BTreeMap::new()).unwrap();
        let d2 = desired(&[("a", None), ("m", None)], [9000, 9009]);
        let p2 = assign_ports(&d2, &p1).unwrap();
        assert_eq!(p2[&name("m")], p1[&name("m")]);
        assert_eq!(p2[&name("a")], 9001);
    }

    #[test]
    fn pinned_ports_win_over_previous_assignments() {
        let prev = BTreeMap::from([(name("a"), 9000)]);
        let d = desired(&[("a", None), ("b", Some(9000))], [9000, 9009]);
        let p = assign_ports(&d, &prev).unwrap();
        assert_eq!(p[&name("b")], 9000);
        assert_eq!(p[&name("a")], 9001);
    }

    #[test]
    fn a_previous_port_outside_a_shrunk_range_is_reassigned() {
        let prev = BTreeMap::from([(name("a"), 9005)]);
        let d = desired(&[("a", None)], [9000, 9002]);
        assert_eq!(assign_ports(&d, &prev).unwrap()[&name("a")], 9000);
    }

    #[test]
    fn upstream_slots_take_no_port() {
        let mut d = desired(&[("a", None)], [9000, 9000]);
        d.slots.insert(
            name("up"),
            SlotSpec::new(ProviderKind::OpenAiCompatible, None),
        );
        let p = assign_ports(&d, &BTreeMap::new()).unwrap();
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn exhausted_range_is_an_error() {
        let d = desired(&[("a", None), ("b", None)], [9000, 9000]);
        assert!(matches!(
            assign_ports(&d, &BTreeMap::new()),
            Err(PortError::RangeExhausted { .. })
        ));
    }
}

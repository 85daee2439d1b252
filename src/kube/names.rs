//! Names, labels and identities the controller and the gateway agree on.

use crate::model::SlotName;

/// The finalizer that makes the controller clean up before a Slot goes away.
pub const FINALIZER: &str = "hal0.dev/cleanup";

/// The server-side-apply field manager of the controller.
pub const CONTROLLER_MANAGER: &str = "hal0-controller";

/// The field manager of the gateway (scale and activity writes).
pub const GATEWAY_MANAGER: &str = "hal0-gateway";

/// The label every object made for a Slot carries, with the Slot's name.
pub const SLOT_LABEL: &str = "hal0.dev/slot";

/// `app.kubernetes.io/managed-by` value on the objects the controller makes.
pub const MANAGED_BY: &str = "hal0-controller";

/// Label selector for the objects the controller owns (used to watch only those).
pub const OWNED_SELECTOR: &str = "app.kubernetes.io/managed-by=hal0-controller";

/// The name of the container that runs the provider.
pub const CONTAINER: &str = "provider";

/// The name of the container port and the Service port.
pub const PORT_NAME: &str = "http";

/// The Deployment and Service name of a Slot: `hal0-slot-<name>`. Slot names are at most 50
/// characters and start with a letter, so this is a valid DNS-1035 label (Service names).
pub fn object_name(slot: &SlotName) -> String {
    format!("hal0-slot-{slot}")
}

/// Labels on a Slot's Deployment, pods and Service.
pub fn labels(slot: &SlotName) -> std::collections::BTreeMap<String, String> {
    [
        ("app.kubernetes.io/name", "hal0-slot"),
        ("app.kubernetes.io/managed-by", MANAGED_BY),
        (SLOT_LABEL, slot.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The labels that select a Slot's pods (a subset of [`labels`], immutable on a Deployment).
pub fn selector(slot: &SlotName) -> std::collections::BTreeMap<String, String> {
    [
        (
            "app.kubernetes.io/name".to_string(),
            "hal0-slot".to_string(),
        ),
        (SLOT_LABEL.to_string(), slot.to_string()),
    ]
    .into()
}

/// The in-cluster URL of a Slot's Service.
pub fn endpoint(slot: &SlotName, namespace: &str, port: u16) -> String {
    format!("http://{}.{namespace}.svc:{port}", object_name(slot))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_fit_a_dns_label() {
        let long = SlotName::parse(&"a".repeat(50)).expect("valid");
        assert!(object_name(&long).len() <= 63);
        let s = SlotName::parse("fast").expect("valid");
        assert_eq!(object_name(&s), "hal0-slot-fast");
        assert_eq!(
            endpoint(&s, "ai", 8080),
            "http://hal0-slot-fast.ai.svc:8080"
        );
    }
}

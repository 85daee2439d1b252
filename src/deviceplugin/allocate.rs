//! What a container gets for its device IDs (`Allocate`) and which IDs we would rather it got
//! (`GetPreferredAllocation`). Pure functions of the inventory.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::api;
use super::inventory::{Health, Inventory, PhysicalDevice};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocateError {
    #[error("unknown device ID {id:?} for {resource}; this node advertises: {known}")]
    UnknownDevice {
        id: String,
        resource: String,
        known: String,
    },
    #[error("device ID {id:?} ({address}) is unhealthy: {reason}")]
    UnhealthyDevice {
        id: String,
        address: String,
        reason: String,
    },
    #[error("the allocation request for container {index} names no device IDs")]
    NoDevices { index: usize },
}

impl From<AllocateError> for tonic::Status {
    fn from(e: AllocateError) -> Self {
        match e {
            AllocateError::UnknownDevice { .. } => tonic::Status::not_found(e.to_string()),
            AllocateError::UnhealthyDevice { .. } => {
                tonic::Status::failed_precondition(e.to_string())
            }
            AllocateError::NoDevices { .. } => tonic::Status::invalid_argument(e.to_string()),
        }
    }
}

/// The container's share of the devices behind `ids`: each physical device's nodes once,
/// read-write, with the host path as the container path. No mounts or environment: the nodes
/// are everything llama.cpp (Vulkan/ROCm) and FastFlowLM need from the plugin.
pub fn allocate_container(
    inventory: &Inventory,
    resource: &str,
    ids: &[String],
) -> Result<api::ContainerAllocateResponse, AllocateError> {
    let mut devices: Vec<&PhysicalDevice> = Vec::new();
    for id in ids {
        let device = inventory
            .lookup(id)
            .ok_or_else(|| AllocateError::UnknownDevice {
                id: id.clone(),
                resource: resource.to_string(),
                known: known_ids(inventory),
            })?;
        if let Health::Unhealthy(reason) = &device.health {
            return Err(AllocateError::UnhealthyDevice {
                id: id.clone(),
                address: device.pci_address.clone(),
                reason: reason.clone(),
            });
        }
        if !devices.iter().any(|d| d.pci_address == device.pci_address) {
            devices.push(device);
        }
    }
    if inventory.per_gib {
        // Memory IDs only count: the device nodes come with the device resource.
        return Ok(api::ContainerAllocateResponse::default());
    }
    let mut seen: BTreeSet<&PathBuf> = BTreeSet::new();
    let specs = devices
        .iter()
        .flat_map(|d| d.nodes.iter())
        .filter(|node| seen.insert(node))
        .map(|node| api::DeviceSpec {
            container_path: node.display().to_string(),
            host_path: node.display().to_string(),
            permissions: "rw".to_string(),
        })
        .collect();
    Ok(api::ContainerAllocateResponse {
        devices: specs,
        ..Default::default()
    })
}

/// `Allocate` for every container of the request; all or nothing.
pub fn allocate(
    inventory: &Inventory,
    resource: &str,
    request: &api::AllocateRequest,
) -> Result<api::AllocateResponse, AllocateError> {
    let container_responses = request
        .container_requests
        .iter()
        .enumerate()
        .map(|(index, c)| {
            if c.devices_ids.is_empty() {
                return Err(AllocateError::NoDevices { index });
            }
            allocate_container(inventory, resource, &c.devices_ids)
        })
        .collect::<Result<_, _>>()?;
    Ok(api::AllocateResponse {
        container_responses,
    })
}

fn known_ids(inventory: &Inventory) -> String {
    let ids: Vec<String> = inventory.schedulable().into_iter().map(|s| s.id).collect();
    if ids.is_empty() {
        "none".to_string()
    } else {
        ids.join(", ")
    }
}

/// IDs for one container, keeping it on as few physical devices as possible: the
/// `must_include` IDs first, then more IDs from the devices those live on, then from the
/// device with the most free IDs, and so on. Unknown IDs in `available` are ignored (the
/// kubelet validates them at `Allocate`).
pub fn preferred(
    inventory: &Inventory,
    available: &[String],
    must_include: &[String],
    size: usize,
) -> Vec<String> {
    let mut chosen: Vec<String> = must_include.iter().take(size).cloned().collect();
    let mut free: Vec<(String, String)> = available
        .iter()
        .filter(|id| !chosen.contains(id))
        .filter_map(|id| {
            inventory
                .lookup(id)
                .map(|d| (d.pci_address.clone(), id.clone()))
        })
        .collect();
    // Devices already in use by this container go first, then the fullest-free ones, so a
    // container lands on one device whenever one has room.
    let mut order: Vec<String> = Vec::new();
    for id in &chosen {
        if let Some(d) = inventory.lookup(id)
            && !order.contains(&d.pci_address)
        {
            order.push(d.pci_address.clone());
        }
    }
    let mut others: Vec<(usize, String)> = Vec::new();
    for (address, _) in &free {
        if !order.contains(address) && !others.iter().any(|(_, a)| a == address) {
            let count = free.iter().filter(|(a, _)| a == address).count();
            others.push((count, address.clone()));
        }
    }
    others.sort_by(|(ca, aa), (cb, ab)| cb.cmp(ca).then(aa.cmp(ab)));
    order.extend(others.into_iter().map(|(_, a)| a));
    for address in order {
        while chosen.len() < size {
            let Some(i) = free.iter().position(|(a, _)| *a == address) else {
                break;
            };
            chosen.push(free.remove(i).1);
        }
    }
    chosen
}

/// `GetPreferredAllocation` for every container of the request.
pub fn preferred_allocation(
    inventory: &Inventory,
    request: &api::PreferredAllocationRequest,
) -> api::PreferredAllocationResponse {
    let container_responses = request
        .container_requests
        .iter()
        .map(|c| api::ContainerPreferredAllocationResponse {
            device_ids: preferred(
                inventory,
                &c.available_device_ids,
                &c.must_include_device_ids,
                usize::try_from(c.allocation_size).unwrap_or(0),
            ),
        })
        .collect();
    api::PreferredAllocationResponse {
        container_responses,
    }
}

#[cfg(test)]
#[path = "allocate_tests.rs"]
mod tests;

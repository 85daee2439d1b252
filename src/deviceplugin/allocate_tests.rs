use std::num::NonZeroU32;
use std::path::PathBuf;

use super::*;
use crate::deviceplugin::inventory::{Details, IgpuDetails};
use crate::deviceplugin::sysfs::PciId;

fn gpu(address: &str, render: &str) -> PhysicalDevice {
    PhysicalDevice {
        pci_address: address.to_string(),
        pci_id: PciId {
            vendor: 0x1002,
            device: 0x1586,
            revision: 0xc1,
        },
        nodes: vec![
            PathBuf::from(format!("/dev/dri/{render}")),
            PathBuf::from("/dev/kfd"),
        ],
        numa_node: None,
        health: Health::Healthy,
        details: Details::Igpu(IgpuDetails {
            apu: Some("Strix Halo"),
            vram_total: None,
            gtt_total: None,
            kfd: true,
        }),
    }
}

fn inventory(shared: u32, devices: Vec<PhysicalDevice>) -> Inventory {
    Inventory {
        devices,
        shared: NonZeroU32::new(shared).unwrap_or(NonZeroU32::MIN),
        per_gib: false,
    }
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn paths(resp: &api::ContainerAllocateResponse) -> Vec<(&str, &str, &str)> {
    resp.devices
        .iter()
        .map(|d| {
            (
                d.container_path.as_str(),
                d.host_path.as_str(),
                d.permissions.as_str(),
            )
        })
        .collect()
}

#[test]
fn two_ids_on_one_gpu_get_its_nodes_once() {
    let inv = inventory(4, vec![gpu("a", "renderD128")]);
    let resp = allocate_container(&inv, "amd.com/gpu", &ids(&["a-0", "a-3"])).expect("ok");
    assert_eq!(
        paths(&resp),
        [
            ("/dev/dri/renderD128", "/dev/dri/renderD128", "rw"),
            ("/dev/kfd", "/dev/kfd", "rw"),
        ]
    );
    assert!(resp.mounts.is_empty() && resp.envs.is_empty() && resp.cdi_devices.is_empty());
}

#[test]
fn ids_on_two_gpus_get_both_render_nodes_and_kfd_once() {
    let inv = inventory(1, vec![gpu("a", "renderD128"), gpu("b", "renderD129")]);
    let resp = allocate_container(&inv, "amd.com/gpu", &ids(&["a", "b"])).expect("ok");
    let host: Vec<&str> = paths(&resp).into_iter().map(|p| p.1).collect();
    assert_eq!(
        host,
        ["/dev/dri/renderD128", "/dev/kfd", "/dev/dri/renderD129"]
    );
}

#[test]
fn unknown_ids_are_refused_with_not_found_naming_the_known_ones() {
    let inv = inventory(2, vec![gpu("a", "renderD128")]);
    let err = allocate_container(&inv, "amd.com/gpu", &ids(&["a-0", "nope"])).expect_err("nope");
    let status = tonic::Status::from(err);
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(
        status.message(),
        "unknown device ID \"nope\" for amd.com/gpu; this node advertises: a-0, a-1"
    );
}

#[test]
fn unhealthy_devices_are_refused_with_their_reason() {
    let mut broken = gpu("a", "renderD128");
    broken.health = Health::Unhealthy("/dev/dri/renderD128 is missing".into());
    let inv = inventory(1, vec![broken]);
    let status = tonic::Status::from(
        allocate_container(&inv, "amd.com/gpu", &ids(&["a"])).expect_err("unhealthy"),
    );
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(status.message().contains("renderD128 is missing"));
}

#[test]
fn a_request_allocates_every_container_or_none() {
    let inv = inventory(2, vec![gpu("a", "renderD128")]);
    let request = |second: &str| api::AllocateRequest {
        container_requests: vec![
            api::ContainerAllocateRequest {
                devices_ids: ids(&["a-0"]),
            },
            api::ContainerAllocateRequest {
                devices_ids: ids(&[second]),
            },
        ],
    };
    let ok = allocate(&inv, "amd.com/gpu", &request("a-1")).expect("ok");
    assert_eq!(ok.container_responses.len(), 2);
    assert!(allocate(&inv, "amd.com/gpu", &request("zzz")).is_err());
}

#[test]
fn preferred_allocation_keeps_a_container_on_one_device() {
    let inv = inventory(3, vec![gpu("a", "renderD128"), gpu("b", "renderD129")]);
    // b has three free IDs, a only one: two IDs fit on b alone.
    let got = preferred(&inv, &ids(&["a-2", "b-0", "b-1", "b-2"]), &[], 2);
    assert_eq!(got, ids(&["b-0", "b-1"]));
    // With a-2 required, the rest comes from a first, then spills to b.
    let got = preferred(&inv, &ids(&["a-1", "a-2", "b-0", "b-1"]), &ids(&["a-2"]), 3);
    assert_eq!(got, ids(&["a-2", "a-1", "b-0"]));
}

#[test]
fn preferred_allocation_ignores_unknown_ids_and_never_exceeds_the_size() {
    let inv = inventory(2, vec![gpu("a", "renderD128")]);
    let got = preferred(&inv, &ids(&["x", "a-0", "a-1"]), &[], 1);
    assert_eq!(got, ids(&["a-0"]));
    let resp = preferred_allocation(
        &inv,
        &api::PreferredAllocationRequest {
            container_requests: vec![api::ContainerPreferredAllocationRequest {
                available_device_ids: ids(&["a-0", "a-1"]),
                must_include_device_ids: vec![],
                allocation_size: 2,
            }],
        },
    );
    assert_eq!(resp.container_responses[0].device_ids, ids(&["a-0", "a-1"]));
}

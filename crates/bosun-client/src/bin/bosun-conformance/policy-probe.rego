# The probe of `bosun-conformance --policy`: rules on the request's fields
# as the Kata agent renders them (see policy.rs).
package agent_policy

default SetPolicyRequest := true
default GetMetricsRequest := true

default CreateSandboxRequest := false
CreateSandboxRequest if {
    input.hostname == "probe"
    input.sandbox_pidns == false
    count(input.dns) == 0
    input.sandbox_id == "s1"
}

default CreateContainerRequest := false
CreateContainerRequest if {
    input.container_id == "c1"
    input.OCI.Hooks == null
    some m in input.OCI.Mounts
    m.type_ == "proc"
    input.OCI.Process.Args == ["sleep", "300"]
    input.OCI.Process.Terminal == false
    input.sandbox_pidns == false
    count(input.storages) == 0
}

default ExecProcessRequest := false
ExecProcessRequest if {
    input.process.Args == ["echo", "hi"]
    input.string_user == null
    input.process.User.UID == 0
}

default CopyFileRequest := false
CopyFileRequest if {
    input.file_type == "Regular"
    input.symlink_target == null
    input.file_size == 3
    input.path == "/run/kata-containers/shared/containers/x-hosts"
}
CopyFileRequest if {
    input.file_type == "Symlink"
    input.symlink_target == "..data/hosts"
}

default UpdateInterfaceRequest := false
UpdateInterfaceRequest if {
    input.interface.name == "eth0"
    input.interface.IPAddresses[0].family == 0
    input.interface.IPAddresses[0].mask == "24"
    input.interface.mtu == 1500
}

default UpdateRoutesRequest := false
UpdateRoutesRequest if {
    input.routes.Routes[0].gateway == "10.0.0.1"
    input.routes.Routes[0].family == 0
}

default AddARPNeighborsRequest := false
AddARPNeighborsRequest if {
    input.neighbors.ARPNeighbors[0].state == 128
    input.neighbors.ARPNeighbors[0].toIPAddress.address == "10.0.0.9"
}

default RemoveContainerRequest := false
RemoveContainerRequest if {
    input.container_id == "c1"
    input.timeout == 0
}

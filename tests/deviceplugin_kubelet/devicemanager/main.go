// Placeholder replaced by the device-manager harness.
package main

func main() {}

// Package deploy holds what a deployment is made of besides the stack
// itself: the instances' boot scripts (userdata.go), the check that a
// built binary runs on the instances' C library (glibc.go), and the AWS
// CDK CLI that users deploy with, pinned and run as they run it
// (cdkcli.go).
package deploy

// Package deploy holds what a deployment is made of besides the stack
// itself: the instances' boot scripts (userdata.go), the check that a
// built binary runs on the instances' C library (glibc.go), and deploying
// a synthesized cloud assembly the way `cdk deploy` does (cfndeploy.go).
package deploy

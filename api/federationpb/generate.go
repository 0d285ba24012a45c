// Package federationpb holds the generated code of the agent-to-hub
// federation protocol (federation.proto). Regenerate with `make proto`.
package federationpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative federation.proto

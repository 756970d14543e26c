module github.com/dbrx-engine/dbrx

go 1.26.8

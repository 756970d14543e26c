// Package layers holds the test that enforces the project's import table: each
// package imports only from the layers below it (see DESIGN in the README).
package layers

package gguf

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ValueType is the type tag of a metadata value (gguf_type).
type ValueType uint32

// The GGUF metadata value types, numbered as in the GGUF specification.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

var valueTypeNames = [...]string{"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array", "uint64", "int64", "float64"}

// fixed sizes in bytes; 0 for string and array.
var valueTypeSizes = [...]int{1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8}

// Valid reports whether t is one of the thirteen GGUF value types.
func (t ValueType) Valid() bool { return t <= TypeFloat64 }

func (t ValueType) String() string {
	if t.Valid() {
		return valueTypeNames[t]
	}
	return "type(" + strconv.FormatUint(uint64(t), 10) + ")"
}

// minSize is the fewest bytes one encoded value of type t can take.
func (t ValueType) minSize() uint64 {
	switch t {
	case TypeString:
		return 8 // length
	case TypeArray:
		return 12 // element type + count
	}
	return uint64(valueTypeSizes[t])
}

// Scalar lists the Go types that map one-to-one onto GGUF scalar value types.
type Scalar interface {
	uint8 | int8 | uint16 | int16 | uint32 | int32 | float32 | bool | string | uint64 | int64 | float64
}

func scalarType(v any) (ValueType, bool) {
	switch v.(type) {
	case uint8:
		return TypeUint8, true
	case int8:
		return TypeInt8, true
	case uint16:
		return TypeUint16, true
	case int16:
		return TypeInt16, true
	case uint32:
		return TypeUint32, true
	case int32:
		return TypeInt32, true
	case float32:
		return TypeFloat32, true
	case bool:
		return TypeBool, true
	case string:
		return TypeString, true
	case uint64:
		return TypeUint64, true
	case int64:
		return TypeInt64, true
	case float64:
		return TypeFloat64, true
	}
	return 0, false
}

// Value is one typed metadata value. The zero Value is invalid (writers reject it);
// make values with the constructors (Uint32, String, ArrayOf, ...).
type Value struct {
	typ ValueType
	v   any // the Go scalar for typ, or Array for TypeArray; nil in the zero Value
}

// Constructors for scalar values.
func Uint8(v uint8) Value     { return Value{TypeUint8, v} }
func Int8(v int8) Value       { return Value{TypeInt8, v} }
func Uint16(v uint16) Value   { return Value{TypeUint16, v} }
func Int16(v int16) Value     { return Value{TypeInt16, v} }
func Uint32(v uint32) Value   { return Value{TypeUint32, v} }
func Int32(v int32) Value     { return Value{TypeInt32, v} }
func Float32(v float32) Value { return Value{TypeFloat32, v} }
func Bool(v bool) Value       { return Value{TypeBool, v} }
func String(v string) Value   { return Value{TypeString, v} }
func Uint64(v uint64) Value   { return Value{TypeUint64, v} }
func Int64(v int64) Value     { return Value{TypeInt64, v} }
func Float64(v float64) Value { return Value{TypeFloat64, v} }

// ArrayOf makes an array value of scalars; the slice is kept, not copied.
func ArrayOf[T Scalar](xs []T) Value { return ArrayValue(MakeArray(xs)) }

// ArrayValue wraps an Array (possibly of arrays) as a Value.
func ArrayValue(a Array) Value { return Value{TypeArray, a} }

// Type is the value's GGUF type.
func (v Value) Type() ValueType { return v.typ }

// IsValid reports whether v was made by a constructor or read from a file.
func (v Value) IsValid() bool { return v.v != nil }

// Any returns the Go value: one of the Scalar types, or an Array.
func (v Value) Any() any { return v.v }

// AsString returns a string value.
func (v Value) AsString() (string, bool) { s, ok := v.v.(string); return s, ok }

// AsBool returns a bool value.
func (v Value) AsBool() (bool, bool) { b, ok := v.v.(bool); return b, ok }

// AsArray returns an array value.
func (v Value) AsArray() (Array, bool) { a, ok := v.v.(Array); return a, ok }

// AsUint64 returns an integer value of any width and signedness that is >= 0.
func (v Value) AsUint64() (uint64, bool) {
	switch x := v.v.(type) {
	case uint8:
		return uint64(x), true
	case uint16:
		return uint64(x), true
	case uint32:
		return uint64(x), true
	case uint64:
		return x, true
	}
	if i, ok := v.AsInt64(); ok && i >= 0 {
		return uint64(i), true
	}
	return 0, false
}

// AsInt64 returns an integer value of any width and signedness that fits int64.
func (v Value) AsInt64() (int64, bool) {
	switch x := v.v.(type) {
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x), true
		}
	}
	return 0, false
}

// AsFloat64 returns a float32 or float64 value (float32 widened exactly).
func (v Value) AsFloat64() (float64, bool) {
	switch x := v.v.(type) {
	case float32:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

// String formats the value for humans; long arrays are elided.
func (v Value) String() string {
	switch x := v.v.(type) {
	case nil:
		return "<invalid>"
	case string:
		return strconv.Quote(x)
	case Array:
		return x.String()
	}
	return fmt.Sprint(v.v)
}

// Array is a homogeneous metadata array. Arrays of arrays (element type
// TypeArray) may hold sub-arrays of different element types.
type Array struct {
	elem ValueType
	v    any // []T for a Scalar T, or []Array
}

// MakeArray makes an array of scalars; the slice is kept, not copied.
func MakeArray[T Scalar](xs []T) Array {
	var zero T
	t, _ := scalarType(any(zero))
	if xs == nil {
		xs = []T{}
	}
	return Array{t, xs}
}

// NestedArray makes an array whose elements are arrays.
func NestedArray(xs []Array) Array {
	if xs == nil {
		xs = []Array{}
	}
	return Array{TypeArray, xs}
}

// ArrayAs returns the elements of a if they have Go type T (for example
// ArrayAs[string] for tokenizer.ggml.tokens). The slice is shared, not copied.
func ArrayAs[T Scalar](a Array) ([]T, bool) {
	xs, ok := a.v.([]T)
	return xs, ok
}

// Elem is the element type.
func (a Array) Elem() ValueType { return a.elem }

// Arrays returns the elements of an array of arrays.
func (a Array) Arrays() ([]Array, bool) { xs, ok := a.v.([]Array); return xs, ok }

// Any returns the underlying slice ([]uint8, ..., []string, []Array).
func (a Array) Any() any { return a.v }

// Len is the number of elements.
func (a Array) Len() int {
	switch x := a.v.(type) {
	case []uint8:
		return len(x)
	case []int8:
		return len(x)
	case []uint16:
		return len(x)
	case []int16:
		return len(x)
	case []uint32:
		return len(x)
	case []int32:
		return len(x)
	case []float32:
		return len(x)
	case []bool:
		return len(x)
	case []string:
		return len(x)
	case []uint64:
		return len(x)
	case []int64:
		return len(x)
	case []float64:
		return len(x)
	case []Array:
		return len(x)
	}
	return 0
}

// Index returns element i as a Value; it panics if i is out of range.
func (a Array) Index(i int) Value {
	switch x := a.v.(type) {
	case []uint8:
		return Uint8(x[i])
	case []int8:
		return Int8(x[i])
	case []uint16:
		return Uint16(x[i])
	case []int16:
		return Int16(x[i])
	case []uint32:
		return Uint32(x[i])
	case []int32:
		return Int32(x[i])
	case []float32:
		return Float32(x[i])
	case []bool:
		return Bool(x[i])
	case []string:
		return String(x[i])
	case []uint64:
		return Uint64(x[i])
	case []int64:
		return Int64(x[i])
	case []float64:
		return Float64(x[i])
	case []Array:
		return ArrayValue(x[i])
	}
	panic("gguf: Index on an invalid Array")
}

// String formats the array for humans, showing at most 8 elements.
func (a Array) String() string {
	var b strings.Builder
	n := a.Len()
	fmt.Fprintf(&b, "[%s × %d:", a.elem, n)
	for i := 0; i < n && i < 8; i++ {
		b.WriteString(" ")
		b.WriteString(a.Index(i).String())
	}
	if n > 8 {
		b.WriteString(" …")
	}
	b.WriteString("]")
	return b.String()
}

// KV is one metadata key-value pair.
type KV struct {
	Key   string
	Value Value
}

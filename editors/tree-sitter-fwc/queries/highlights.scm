; Highlights for fwc policies. Capture names are the common ones of
; Neovim, Helix and Zed.

(comment) @comment
(string) @string
(number) @number
(rate (number) @number)
(address) @constant
(mac_address) @constant
(interface_name) @string.special
(tcp_flags) @constant.builtin
(connection_state) @constant.builtin
(verdict) @constant.builtin
(verdict_keyword) @keyword
(protocol) @type.builtin
(reject_kind) @constant.builtin
(code) @label

(variable) @variable
(variable_name) @variable
(service_name) @type
(chain_name) @function
(module_name) @module

(action) @keyword
(direction) @keyword
(not) @keyword.operator

[
  "policy" "let" "param" "service" "chain" "keep" "include" "use" "except"
  "ignore" "test" "expect" "on" "from" "to" "any" "sport" "port" "flags"
  "mac" "state" "with" "to-source" "to-destination" "to-port" "stateful"
  "log" "limit" "rate" "burst" "comment" "ipv4" "ipv6"
] @keyword

["second" "minute" "hour" "day"] @keyword

["=" "->"] @operator
["," "-" "/"] @punctuation.delimiter
["{" "}"] @punctuation.bracket

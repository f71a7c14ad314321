/**
 * tree-sitter grammar for fwc policies (.fw).
 *
 * It follows compiler/syntax/fwc.pest: one statement per line, `\` at a
 * line's end continues it, `{ … }` sets, chain bodies and test blocks span
 * lines, and the parts of a rule come in any order. It is for editors
 * (highlighting, folding, text objects), so it accepts a little more than
 * fwc does (a part given twice, a part that does not fit its rule): those
 * are fwc's diagnostics to report, not syntax errors.
 */

const PROTOCOLS = ['tcp', 'udplite', 'udp', 'sctp', 'icmpv6', 'icmp', 'esp', 'ah', 'gre', 'igmp', 'ospf', 'vrrp'];
const ACTIONS = ['allow', 'deny', 'reject', 'jump', 'log', 'masquerade', 'snat', 'dnat', 'redirect', 'forward-port'];
const STATES = ['new', 'established', 'related', 'invalid', 'untracked'];

const commaSep1 = (rule) => seq(rule, repeat(seq(',', rule)));

module.exports = grammar({
  name: 'fwc',

  extras: $ => [/[ \t]/, /\\\r?\n/, $.comment],

  conflicts: $ => [],

  rules: {
    source_file: $ => seq(
      repeat(choice($._newline, seq($._statement, $._newline))),
      optional($._statement),
    ),

    _newline: _ => /\r?\n/,

    comment: _ => token(seq('#', /[^\r\n]*/)),

    _statement: $ => choice(
      $.policy_declaration,
      $.let_declaration,
      $.param_declaration,
      $.service_declaration,
      $.chain_declaration,
      $.keep_chains,
      $.include,
      $.use,
      $.ignore_declaration,
      $.test_block,
      $.return_rule,
      $.rule,
    ),

    // ------------------------------------------------------------ words

    identifier: _ => /[A-Za-z_][A-Za-z0-9_-]*/,
    variable: _ => /\$[A-Za-z_][A-Za-z0-9_-]*/,
    string: _ => /"([^"\\\r\n]|\\[^\r\n])*"/,
    number: _ => /[0-9]+/,
    // Anything with a dot or a colon: IPv4 and IPv6 addresses and blocks.
    address: _ => token(/[0-9A-Fa-f]*[:.][0-9A-Fa-f:.]*(\/[0-9]+)?/),
    mac_address: _ => token(prec(2, /[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}/)),
    // `eth0`, `eth0.100`, `eth+`; a `-` not followed by `>` (the arrow).
    // fwc also takes names that start with a digit; here they would read
    // as port ranges in `let web = 80, 8000-8080`.
    interface_name: _ => /[A-Za-z_][A-Za-z0-9_.+@\/]*(-[A-Za-z0-9_.+@\/]+)*/,

    // ------------------------------------------------------------ rules

    rule: $ => seq(field('action', $.action), repeat($._part)),
    return_rule: $ => seq(field('action', alias('return', $.action)), repeat($._part)),
    action: _ => choice(...ACTIONS),

    _part: $ => choice(
      $.direction,
      $.on_clause,
      $.protocol_clause,
      $.service_clause,
      $.from_clause,
      $.to_clause,
      $.sport_clause,
      $.port_clause,
      $.flags_clause,
      $.mac_clause,
      $.state_clause,
      $.reject_with,
      $.nat_target,
      $.option,
      $.string,
      $.connection_state,
    ),

    direction: _ => choice('in', 'out', 'forward'),

    on_clause: $ => seq('on', $.interface, optional(seq('->', $.interface))),
    interface: $ => seq(optional($.not), choice('any', $.variable, $.string, $.interface_name)),
    not: _ => 'not',

    protocol_clause: $ => prec.right(seq($.protocol, optional($.port_list))),
    protocol: $ => choice($._protocol_name, $.number),
    _protocol_name: _ => choice(...PROTOCOLS),

    port_list: $ => prec.right(seq(optional($.not), commaSep1($._port_item))),
    _port_item: $ => choice($.number, $.port_range, $.variable, alias($.identifier, $.service_name)),
    port_range: $ => seq($.number, '-', $.number),

    service_clause: $ => prec.right(seq('service', commaSep1(alias($.identifier, $.service_name)))),

    from_clause: $ => seq('from', $.addresses),
    to_clause: $ => seq('to', choice($.addresses, alias($.identifier, $.chain_name))),
    addresses: $ => prec.right(seq(optional($.not), commaSep1($._address_item))),
    _address_item: $ => choice($.address_set, $.variable, $.address),
    address_set: $ => seq('{', repeat(choice($.variable, $.address, ',', $._newline)), '}'),

    sport_clause: $ => seq('sport', $.port_list),
    port_clause: $ => seq('port', $.port_list),
    flags_clause: $ => prec.right(seq('flags', optional($.not), $.tcp_flags, optional($.tcp_flags))),
    tcp_flags: _ => /[A-Za-z]+(,[A-Za-z]+)*/,
    mac_clause: $ => seq('mac', optional($.not), $.mac_address),
    state_clause: $ => prec.right(seq('state', optional($.not), commaSep1($.connection_state))),
    connection_state: _ => choice(...STATES),
    reject_with: $ => seq('with', alias($.identifier, $.reject_kind)),
    nat_target: $ => choice(
      seq(choice('to-source', 'to-destination'), $.address),
      seq('to-port', $.port_list),
    ),

    option: $ => choice(
      'stateful',
      prec.right(seq('log', optional($.string))),
      seq(choice('limit', 'rate'), $.rate, optional(seq('burst', $.number))),
      seq('comment', $.string),
      'ipv4',
      'ipv6',
      seq('ignore', alias($.identifier, $.code)),
    ),
    rate: $ => seq($.number, '/', choice('second', 'minute', 'hour', 'day')),

    // ------------------------------------------------------------ declarations

    policy_declaration: $ => seq('policy', $.direction, $.verdict),
    verdict: _ => choice('accept', 'drop'),

    let_declaration: $ => seq('let', field('name', alias($.identifier, $.variable_name)), '=', $._value),
    param_declaration: $ => seq(
      'param',
      field('name', alias($.identifier, $.variable_name)),
      optional(seq('=', $._value)),
    ),
    // Addresses, ports or an interface: the kind is fwc's to tell.
    _value: $ => choice($.value, $.string),
    value: $ => prec.right(seq(optional($.not), commaSep1(choice(
      $.address_set, $.variable, $.address, $.number, $.port_range, $.interface_name,
    )))),

    // `tcp 3389, udp 3389`: a comma separates ports and entries alike.
    service_declaration: $ => seq(
      'service',
      field('name', alias($.identifier, $.service_name)),
      '=',
      alias($._protocol_name, $.protocol),
      repeat(choice($._service_port, seq(',', choice($._service_port, alias($._protocol_name, $.protocol))))),
    ),
    _service_port: $ => choice($.number, $.port_range, $.variable),

    chain_declaration: $ => seq(
      'chain',
      field('name', alias($.identifier, $.chain_name)),
      optional('keep'),
      $.block,
    ),
    block: $ => seq(
      '{',
      repeat(choice($._newline, seq($._block_statement, $._newline))),
      optional($._block_statement),
      '}',
    ),
    _block_statement: $ => choice($.include, $.return_rule, $.rule),

    keep_chains: $ => seq('keep', 'chain', commaSep1($.string)),
    include: $ => seq('include', $.string),
    use: $ => seq(
      'use',
      alias($.identifier, $.module_name),
      optional(seq('except', commaSep1(alias($.identifier, $.module_name)))),
    ),
    ignore_declaration: $ => seq('ignore', alias($.identifier, $.code), $.string),

    // ------------------------------------------------------------ tests

    test_block: $ => seq('test', $.string, $.test_body),
    test_body: $ => seq(
      '{',
      repeat(choice($._newline, seq($.expect, $._newline))),
      optional($.expect),
      '}',
    ),
    expect: $ => seq('expect', $.verdict_keyword, repeat($._part)),
    verdict_keyword: _ => choice('allow', 'deny', 'reject'),
  },
});

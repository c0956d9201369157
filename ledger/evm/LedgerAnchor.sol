// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title LedgerAnchor
/// @notice Anchors the sealed blocks of an ecard consent ledger: one transaction per block carries
/// the block's Merkle root (RFC 9162 tree head over every entry so far), its tree size and the hash
/// of the previous block.  Only accounts holding the anchorer role may anchor; the admin grants and
/// revokes that role.  Blocks must arrive in order and tree sizes must grow, so the chain holds one
/// append-only history of the log and a second root for the same block number is refused.
contract LedgerAnchor {
    address public admin;
    mapping(address => bool) public isAnchorer;
    /// @notice root anchored for a block number (zero when not anchored yet)
    mapping(uint64 => bytes32) public rootOf;
    /// @notice the number of the next block to anchor (= how many blocks are anchored)
    uint64 public nextBlock;
    uint64 public lastTreeSize;

    event BlockAnchored(
        uint64 indexed blockNumber,
        bytes32 root,
        uint64 treeSize,
        bytes32 prevHash,
        address indexed anchorer
    );
    event AnchorerGranted(address indexed account, address indexed by);
    event AnchorerRevoked(address indexed account, address indexed by);
    event AdminTransferred(address indexed previousAdmin, address indexed newAdmin);

    error NotAdmin(address caller);
    error NotAnchorer(address caller);
    error OutOfOrder(uint64 expected, uint64 given);
    error TreeDidNotGrow(uint64 lastTreeSize, uint64 given);
    error EmptyRoot();
    error ZeroAddress();

    modifier onlyAdmin() {
        if (msg.sender != admin) revert NotAdmin(msg.sender);
        _;
    }

    constructor() {
        admin = msg.sender;
        emit AdminTransferred(address(0), msg.sender);
    }

    function grantAnchorer(address account) external onlyAdmin {
        if (account == address(0)) revert ZeroAddress();
        isAnchorer[account] = true;
        emit AnchorerGranted(account, msg.sender);
    }

    function revokeAnchorer(address account) external onlyAdmin {
        isAnchorer[account] = false;
        emit AnchorerRevoked(account, msg.sender);
    }

    function transferAdmin(address newAdmin) external onlyAdmin {
        if (newAdmin == address(0)) revert ZeroAddress();
        emit AdminTransferred(admin, newAdmin);
        admin = newAdmin;
    }

    function anchor(uint64 blockNumber, bytes32 root, uint64 treeSize, bytes32 prevHash) external {
        if (!isAnchorer[msg.sender]) revert NotAnchorer(msg.sender);
        if (blockNumber != nextBlock) revert OutOfOrder(nextBlock, blockNumber);
        if (root == bytes32(0)) revert EmptyRoot();
        if (treeSize <= lastTreeSize) revert TreeDidNotGrow(lastTreeSize, treeSize);
        rootOf[blockNumber] = root;
        nextBlock = blockNumber + 1;
        lastTreeSize = treeSize;
        emit BlockAnchored(blockNumber, root, treeSize, prevHash, msg.sender);
    }
}

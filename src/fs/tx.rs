//! Builds one transaction's records in an order `apply` accepts: new inodes first,
//! then the operation's own records, then the final attributes of every inode it
//! touched, then the inodes it frees.

use std::collections::BTreeMap;

use super::error::{Error, Result};
use super::inode::Attr;
use super::record::Record;
use super::state::State;
use crate::types::Ino;

#[derive(Default)]
pub struct Tx {
    created: Vec<Ino>,
    body: Vec<Record>,
    attrs: BTreeMap<Ino, Attr>,
    freed: Vec<Ino>,
}

impl Tx {
    pub fn new() -> Tx {
        Tx::default()
    }

    pub fn create(&mut self, attr: Attr) {
        self.created.push(attr.ino);
        self.attrs.insert(attr.ino, attr);
    }

    /// The inode's attributes as this transaction will leave them.
    pub fn attr(&mut self, st: &State, ino: Ino) -> Result<&mut Attr> {
        match self.attrs.entry(ino) {
            std::collections::btree_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::btree_map::Entry::Vacant(e) => Ok(e.insert(st.inode(ino).ok_or(Error::NotFound)?.attr)),
        }
    }

    pub fn push(&mut self, rec: Record) {
        self.body.push(rec);
    }

    pub fn free(&mut self, ino: Ino) {
        self.freed.push(ino);
    }

    pub fn is_empty(&self) -> bool {
        self.body.is_empty() && self.attrs.is_empty() && self.freed.is_empty()
    }

    pub fn into_records(mut self) -> Vec<Record> {
        let mut out = Vec::with_capacity(self.body.len() + self.attrs.len() + self.freed.len());
        for ino in &self.created {
            if let Some(a) = self.attrs.remove(ino) {
                out.push(Record::SetInode(a));
            }
        }
        out.append(&mut self.body);
        for (ino, a) in self.attrs {
            if !self.freed.contains(&ino) {
                out.push(Record::SetInode(a));
            }
        }
        out.extend(self.freed.into_iter().map(|ino| Record::FreeInode { ino }));
        out
    }
}
